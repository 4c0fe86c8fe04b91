"""Adversarial fine-tuning of the vocoder: the discriminators' shapes and losses, a run that resumes them."""

from __future__ import annotations

from pathlib import Path

import torch

from avatar_core.training import read_checkpoint
from avatar_core.vocoder.config import VocoderFitConfig
from avatar_core.vocoder.discriminator import (
    Discriminators,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
)
from avatar_core.vocoder.train import export_checkpoint, fit
from tests.avatar_core.test_vocoder import losses, tiny_fit, vowel, write_clip


def test_every_judge_scores_a_batch_and_the_losses_point_the_right_way() -> None:
    torch.manual_seed(0)
    judges = Discriminators(periods=(2, 3), resolutions=((512, 128),))
    audio = torch.randn(2, 4800)  # (B, S)
    logits, maps = judges(audio)
    assert len(logits) == len(maps) == 3
    assert all(logit.shape[0] == 2 for logit in logits)
    sure_real, sure_fake = [torch.full((2, 5), 2.0)], [torch.full((2, 5), -2.0)]
    assert float(discriminator_loss(sure_real, sure_fake)) == 0.0  # the hinge is met
    assert float(generator_loss(sure_fake)) == 3.0  # 1 - (-2)
    assert float(feature_matching_loss(maps, maps).detach()) == 0.0


def test_an_adversarial_run_keeps_and_resumes_its_discriminators(tmp_path: Path) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    write_clip(data, vowel())

    def config(steps: int) -> VocoderFitConfig:
        base = tiny_fit(steps)
        train = base.train.model_copy(
            update={
                "adversarial_weight": 0.1,
                "feature_matching_weight": 0.2,
                "spectrogram_discriminator": False,
            }
        )
        return base.model_copy(update={"train": train})

    last = fit(data, run, config(10))
    state = read_checkpoint(last, "cpu", "vocoder checkpoint")
    assert isinstance(state, dict) and "discriminators" in state and "discriminators_optimizer" in state
    assert not any(k.startswith("judges.5") for k in state["discriminators"])  # periods only
    fit(data, run, config(20))
    rows = losses(run)
    assert [int(r["step"]) for r in rows][-2:] == [10, 20]
    assert {"adversarial", "feature_matching", "discriminator"} <= set(rows[-1])
    exported = tmp_path / "vocoder.pt"
    export_checkpoint(last, exported)
    small = read_checkpoint(exported, "cpu", "vocoder checkpoint")
    assert isinstance(small, dict) and "discriminators" not in small and small["step"] == 20
