"""The neural vocoder: shapes, config checks, a tiny run that overfits one clip, resuming, streaming."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from avatar_core.data.samples import Sample
from avatar_core.motion import MOTION_DIM
from avatar_core.partner import PARTNER_DIM
from avatar_core.speech import features
from avatar_core.speech.features import FEATURE_DIM, HOP, SAMPLE_RATE
from avatar_core.vocoder.config import (
    SIZES,
    VocoderConfig,
    VocoderConfigError,
    VocoderFitConfig,
    load_vocoder_config,
)
from avatar_core.vocoder.infer import NeuralVocoder, StreamingVocoder
from avatar_core.vocoder.model import Vocoder
from avatar_core.vocoder.train import export_checkpoint, fit, load_vocoder

CONFIGS = Path(__file__).parents[2] / "configs" / "vocoder"


def tiny() -> Vocoder:
    torch.manual_seed(0)
    return Vocoder(VocoderConfig.model_validate(SIZES["tiny"]))


def vowel(seconds: float = 1.0, f0: float = 220.0) -> np.ndarray:
    """A gliding harmonic tone with a few formant-like partials, (S,) float32."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.1 * np.sin(2 * np.pi * 2 * t))) / SAMPLE_RATE
    wave = np.sum([np.sin(k * phase) / k for k in range(1, 12)], axis=0)  # (S,)
    out: np.ndarray = (0.3 * wave / np.abs(wave).max()).astype(np.float32)
    return out


def write_clip(folder: Path, audio: np.ndarray) -> None:
    """One speaking sample with its features and audio (and one listening sample the loop must skip)."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = features.frames_for(audio.size)
    wave = np.zeros(frames * HOP, np.float32)
    wave[: audio.size] = audio
    for name, role in (("000000", "speak"), ("000001", "listen")):
        Sample(
            name=name,
            text="a",
            voice="jf_alpha",
            role=role,  # type: ignore[arg-type]
            source="teacher",
            tokens=np.array([1], np.int64),
            durations=np.array([frames], np.int64),
            speech=features.analyze(wave),
            motion=np.zeros((frames, MOTION_DIM), np.float32),
            partner=np.zeros((frames, PARTNER_DIM), np.float32),
            audio=(wave * 32767).astype(np.int16),
        ).save(folder)


def tiny_fit(steps: int) -> VocoderFitConfig:
    config = load_vocoder_config(CONFIGS / "tiny.yaml")
    train = config.train.model_copy(update={"steps": steps, "device": "cpu", "log_every": 10})
    return config.model_copy(update={"train": train})


def losses(run: Path) -> list[dict[str, str]]:
    with open(run / "loss.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_shapes() -> None:
    model = tiny()
    feats = torch.randn(2, 10, FEATURE_DIM)  # (B, T, F)
    spec = model.spectrum(feats)
    assert spec.shape == (2, model.config.n_fft // 2 + 1, 10 * model.config.upsample + 1)
    assert model(feats).shape == (2, 10 * HOP)


def test_config_rejects_a_hop_that_does_not_divide_the_frame() -> None:
    with pytest.raises(ValueError, match="must divide"):
        VocoderConfig(hop=250)


def test_bad_yaml_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("size: tiny\ntrain:\n  steps: 0\n")
    with pytest.raises(VocoderConfigError, match=r"train\.steps"):
        load_vocoder_config(path)


def test_shipped_configs_load() -> None:
    for path in sorted(CONFIGS.glob("*.yaml")):
        load_vocoder_config(path).vocoder_config()


def test_tiny_run_overfits_one_clip_and_resumes(tmp_path: Path) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    write_clip(data, vowel())
    last = fit(data, run, tiny_fit(100))
    rows = losses(run)
    first, final = float(rows[0]["total"]), float(rows[-1]["total"])
    assert final < 0.6 * first, (first, final)
    model, state = load_vocoder(last)
    assert state["step"] == 100
    assert state["data"] == {"folder": "data", "mixed_with": [], "clips": 1, "hours": 0.0}
    assert float(model.std.min()) > 0  # statistics were set from the data
    # a resumed run continues from its step
    fit(data, run, tiny_fit(120))
    _, state = load_vocoder(last)
    assert state["step"] == 120
    assert [int(r["step"]) for r in losses(run)][-3:] == [100, 110, 120]
    # the exported copy holds the same network without the optimiser
    small = tmp_path / "vocoder.pt"
    export_checkpoint(last, small)
    exported, state = load_vocoder(small)
    assert "optimizer" not in state and state["step"] == 120
    feats = torch.from_numpy(features.analyze(vowel(0.2)))[None]
    with torch.inference_mode():
        torch.testing.assert_close(exported(feats), load_vocoder(last)[0](feats))


def test_inference_returns_the_right_length_and_streams_the_same_audio() -> None:
    vocoder = NeuralVocoder(tiny())
    feats = features.analyze(vowel(1.3))  # (T, F)
    audio = vocoder.synthesize(feats)
    assert audio.shape == (feats.shape[0] * HOP,) and audio.dtype == np.float32
    assert np.abs(audio).max() <= 1.0
    stream = StreamingVocoder(vocoder)
    chunks = [stream.push(feats[i : i + 7]) for i in range(0, feats.shape[0], 7)]
    assert sum(c.size for c in chunks[:2]) < 14 * HOP  # the lookahead holds frames back
    streamed = np.concatenate([*chunks, stream.flush()])
    assert streamed.shape == audio.shape
    np.testing.assert_allclose(streamed, audio, atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        vocoder.synthesize(feats[:, :10])


def test_rtf_is_reported() -> None:
    result = NeuralVocoder(tiny(), threads=1).measure_rtf(seconds=1.0, repeats=1)
    assert result["rtf"] > 0 and result["audio_s"] == 1.0


def test_the_joint_models_vocoder_is_chosen_by_name() -> None:
    """The bundled network by default, pyworld by name; a wrong name or combination says what to use."""
    from avatar_core.vocoder.infer import WorldVocoder, bundled_vocoder, load_speech_vocoder

    assert bundled_vocoder().is_file()
    neural = load_speech_vocoder()
    assert isinstance(neural, NeuralVocoder) and neural.name == "neural"
    world = load_speech_vocoder("world")
    assert isinstance(world, WorldVocoder)
    feats = features.analyze(vowel(0.5))  # (T, F)
    for vocoder in (neural, world):
        audio = vocoder.synthesize(feats)
        assert audio.shape == (feats.shape[0] * HOP,) and np.isfinite(audio).all()
    with pytest.raises(ValueError, match="neural, world"):
        load_speech_vocoder("griffin-lim")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vocoder 'neural'"):
        load_speech_vocoder("world", bundled_vocoder())


def test_settings_select_the_joint_models_vocoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """``DYAD_VOCODER`` reaches the loaded joint model (what every transport builds through)."""
    from avatar_core.config import AppSettings
    from avatar_core.model.inference import JointModel

    monkeypatch.setenv("DYAD_VOCODER", "world")
    model = JointModel.from_settings(AppSettings(), threads=1)
    assert model.vocoder.name == "world"
    assert JointModel.from_settings(AppSettings(vocoder="neural"), threads=1).vocoder.name == "neural"


def test_settings_set_torchs_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """``DYAD_TORCH_THREADS`` (default 1) is what the joint model computes with."""
    import torch

    from avatar_core.config import AppSettings
    from avatar_core.model.inference import JointModel

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("DYAD_TORCH_THREADS", "2")
        JointModel.from_settings(AppSettings())
        assert torch.get_num_threads() == 2
        monkeypatch.delenv("DYAD_TORCH_THREADS")
        JointModel.from_settings(AppSettings())
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_settings_turn_torchs_onednn_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """``DYAD_TORCH_ONEDNN`` (default off: its caches grow with every new length, bench/memory.py)."""
    import torch

    from avatar_core.config import AppSettings
    from avatar_core.model.inference import JointModel

    before = torch.backends.mkldnn.enabled
    try:
        JointModel.from_settings(AppSettings(), threads=1)
        assert not torch.backends.mkldnn.enabled
        monkeypatch.setenv("DYAD_TORCH_ONEDNN", "1")
        model = JointModel.from_settings(AppSettings(), threads=1)
        assert torch.backends.mkldnn.enabled
        JointModel(model.path, threads=1)  # a model made without the setting leaves torch as it is
        assert torch.backends.mkldnn.enabled
    finally:
        torch.backends.mkldnn.enabled = before  # type: ignore[assignment]
