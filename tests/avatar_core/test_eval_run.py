"""``dyad train eval`` and the quality guard: the representation ceiling per voice, and a checkpoint that
must speak intelligibly (Whisper tiny.en, real Kokoro, real checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avatar_core.config import AppSettings
from avatar_core.eval.judge import GUARD_WER_MAX, QualityError, check_guard, guard, transcriber
from avatar_core.eval.run import SYSTEMS, evaluate
from avatar_core.model.avflow import AVFlow
from avatar_core.model.checkpoint import UnknownSpeakerError, bundled_checkpoint
from avatar_core.model.config import SIZES, ModelConfig
from avatar_core.model.inference import JointModel
from avatar_core.model.train import save_checkpoint
from avatar_core.text.frontend import VOCAB

SENTENCE = "The library opens at nine in the morning."


@pytest.fixture(scope="module")
def two_voice_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = AVFlow(ModelConfig.model_validate({**SIZES["tiny"], "voices": ("jf_alpha", "jm_kumo")}), len(VOCAB))
    with torch.no_grad():
        net.duration[-1].bias.fill_(1.6)  # type: ignore[operator]  # about 4 frames a phoneme
    path: Path = tmp_path_factory.mktemp("ckpt") / "two.pt"
    save_checkpoint(path, net, {"step": 0})
    return path


def test_eval_reports_the_ceiling_for_every_voice(two_voice_checkpoint: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    tables = evaluate([SENTENCE], tmp_path, two_voice_checkpoint, AppSettings().cache_dir, steps=2)
    assert set(tables) == {"jf_alpha", "jm_kumo"}
    for voice, table in tables.items():
        assert set(table) == set(SYSTEMS)
        # Kokoro says the sentence clearly and WORLD keeps it; an untrained network says nothing useful.
        assert table["teacher"]["wer"] <= 0.2 and table["ceiling"]["wer"] <= 0.3, (voice, table)
        assert table["joint"]["wer"] > table["ceiling"]["wer"]
        assert "lip_closure_f1" not in table["ceiling"]  # speech only
        report = json.loads((tmp_path / voice / "report.json").read_text())
        assert "ceiling" in json.dumps(report)
    summary = (tmp_path / "report.md").read_text()
    assert "ceiling_wer" in summary and "jf_alpha" in summary and "jm_kumo" in summary


def test_eval_rejects_a_voice_the_checkpoint_lacks(two_voice_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownSpeakerError, match="jf_alpha, jm_kumo"):
        evaluate([SENTENCE], tmp_path, two_voice_checkpoint, AppSettings().cache_dir, voices=["jf_nezumi"])


def test_committed_checkpoint_passes_the_quality_guard() -> None:
    model = JointModel(bundled_checkpoint(), threads=1)
    wers = guard(model, transcriber(threads=1))
    assert set(wers) == set(model.voices)
    assert all(w <= GUARD_WER_MAX for w in wers.values()), wers
    assert "guard" in check_guard(wers)


def test_guard_fails_a_checkpoint_that_cannot_speak(two_voice_checkpoint: Path) -> None:
    model = JointModel(two_voice_checkpoint, steps=2, threads=1)
    with pytest.raises(QualityError, match="above the guard"):
        check_guard(guard(model, transcriber(threads=1)))
