"""The vocoder's fine-tuning data (``dyad vocoder gta``) and fine-tuning from a checkpoint (``--init``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avatar_core.data.samples import Sample, load_sample, sample_paths
from avatar_core.model.checkpoint import bundled_checkpoint
from avatar_core.model.gta import write_gta
from avatar_core.model.inference import CUT_LEAD, GENERATED_LEAD_FRAMES, JointModel
from avatar_core.motion import MOTION_DIM
from avatar_core.partner import PARTNER_DIM
from avatar_core.speech.features import FEATURE_DIM, HOP, MODEL_FPS
from avatar_core.vocoder.train import Clips, fit, load_vocoder
from tests.avatar_core.test_vocoder import losses, tiny_fit, vowel, write_clip

TEXT = "Your appointment is on Monday."


@pytest.fixture(scope="module")
def model() -> JointModel:
    return JointModel(bundled_checkpoint(), threads=1)


def sample(name: str, model: JointModel, voice: str, role: str = "speak") -> Sample:
    tokens = np.array(model.tokens(TEXT), np.int64)
    durations = np.full(tokens.size, 3, np.int64)
    frames = int(durations.sum())
    return Sample(
        name=name,
        text=TEXT,
        voice=voice,
        role=role,  # type: ignore[arg-type]
        source="teacher",
        tokens=tokens,
        durations=durations,
        speech=np.zeros((frames, FEATURE_DIM), np.float32),
        motion=np.zeros((frames, MOTION_DIM), np.float32),
        partner=np.zeros((frames, PARTNER_DIM), np.float32),
        audio=np.zeros(frames * HOP, np.int16),
    )


def test_predicted_features_follow_the_given_durations(model: JointModel) -> None:
    out = model.generate(TEXT, "jm_kumo")
    # the durations generate() chose, read back from its phone edges
    durations = np.diff(np.round(np.array([0.0] + [p.end for p in out.phones]) * MODEL_FPS)).astype(np.int64)
    durations[0] = GENERATED_LEAD_FRAMES  # generated this long, then cut to LEAD_FRAMES
    speech = model.speech_for(np.array(model.tokens(TEXT)), durations, "jm_kumo", key=TEXT)
    np.testing.assert_allclose(speech[CUT_LEAD:], out.speech, atol=1e-5)  # the same sampling, the same frames


def test_gta_writes_speaking_samples_once(model: JointModel, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "gta"
    data.mkdir()
    sample("000000", model, "jf_nezumi").save(data)
    sample("000001", model, "jf_nezumi", role="listen").save(data)  # the partner's voice: skipped
    assert write_gta(data, out) == 1
    assert [p.name for p in sample_paths(out)] == ["000000.npz"]
    made = load_sample(out / "000000.npz")
    assert made.speech.shape == (3 * len(model.tokens(TEXT)), FEATURE_DIM)
    assert made.source == "gta:teacher" and made.audio is not None
    assert np.abs(made.speech).sum() > 0
    np.testing.assert_allclose(
        made.speech, model.speech_for(made.tokens, made.durations, "jf_nezumi", key="000000"), atol=1e-5
    )
    assert write_gta(data, out) == 0  # resumable: nothing left to write


def test_fine_tuning_starts_from_the_given_weights(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = tmp_path / "data"
    write_clip(data, vowel())
    first = fit(data, tmp_path / "base", tiny_fit(60))
    base, _ = load_vocoder(first)
    tuned_path = fit(data, tmp_path / "tuned", tiny_fit(10), init=first)
    tuned, state = load_vocoder(tuned_path)
    assert state["step"] == 10
    torch.testing.assert_close(tuned.std, base.std)  # the statistics came with the weights
    fresh_start = float(losses(tmp_path / "base")[0]["total"])
    tuned_start = float(losses(tmp_path / "tuned")[0]["total"])
    assert tuned_start < fresh_start, (tuned_start, fresh_start)


def test_fine_tuning_rejects_another_network(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_clip(data, vowel())
    first = fit(data, tmp_path / "base", tiny_fit(1))
    other = tiny_fit(2)
    other = other.model_copy(update={"model": {"dim": 48}})
    with pytest.raises(RuntimeError, match="not this config"):
        fit(data, tmp_path / "tuned", other, init=first)


def test_fine_tuning_mixes_folders(tmp_path: Path) -> None:
    # The gta folder and the teacher's own (same stems, "000000"): both clips are read, and the run
    # records which folders it mixed.
    torch.set_num_threads(1)
    gta, teacher = tmp_path / "gta", tmp_path / "teacher"
    write_clip(gta, vowel(f0=220.0))
    write_clip(teacher, vowel(seconds=1.5, f0=180.0))
    clips = Clips(gta, (teacher,))
    assert clips.reload() == 2 and clips.reload() == 0  # one speaking sample each, listening ones skipped
    assert len({a.size for a in clips.audio}) == 2  # the 1.0 s clip of one folder and the 1.5 s of the other
    _, state = load_vocoder(fit(gta, tmp_path / "run", tiny_fit(2), mix=(teacher,)))
    assert state["data"] == {
        "folder": "gta",
        "mixed_with": ["teacher"],
        "clips": 2,
        "hours": round(clips.hours, 3),
    }
