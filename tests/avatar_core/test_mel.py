"""Log-mel features (avatar_core/speech/mel.py) and a vocoder that reads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avatar_core.speech.features import HOP, SAMPLE_RATE, frames_for
from avatar_core.speech.mel import MelOptions, log_mel, mel_filters
from avatar_core.vocoder.config import SIZES, VocoderConfig, VocoderFitConfig
from avatar_core.vocoder.infer import NeuralVocoder, StreamingVocoder
from avatar_core.vocoder.model import Vocoder
from avatar_core.vocoder.train import fit, load_vocoder
from tests.avatar_core.test_vocoder import vowel, write_clip


def mel_vocoder(subframes: int = 2) -> Vocoder:
    torch.manual_seed(0)
    config = {**SIZES["tiny"], "inputs": "mel", "mel_bands": 40, "mel_subframes": subframes}
    return Vocoder(VocoderConfig.model_validate(config))


def test_frames_line_up_with_the_world_frames() -> None:
    """T frames for S samples as WORLD has; a click lands in the sub-frame whose window is centred on it."""
    options = MelOptions(bands=40, subframes=2, n_fft=600)
    audio = np.zeros(10 * HOP + 123, np.float32)
    assert log_mel(audio, options).shape == (frames_for(audio.size), 80)
    for frame, sub in ((3, 0), (3, 1), (6, 1)):
        click = np.zeros(10 * HOP, np.float32)
        click[frame * HOP + sub * options.hop + options.hop // 2] = 1.0  # the sub-frame's centre
        energy = log_mel(click, options).reshape(10, 2, 40).mean(axis=2)  # (T, subframes)
        assert np.unravel_index(energy.argmax(), energy.shape) == (frame, sub)


def test_a_higher_tone_fills_higher_bands() -> None:
    options = MelOptions(bands=80, subframes=1)
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    peaks = [
        int(log_mel(np.sin(2 * np.pi * hz * t).astype(np.float32), options)[5:-5].mean(0).argmax())
        for hz in (300.0, 1200.0, 4000.0)
    ]
    assert peaks[0] < peaks[1] < peaks[2]


def test_filters_cover_every_band() -> None:
    filters = mel_filters(1200, 100)  # (M, N)
    assert filters.shape == (100, 601) and bool((filters.sum(dim=1) > 0).all())


def test_a_bad_layout_names_the_field() -> None:
    with pytest.raises(ValueError, match="mel_subframes 7"):
        MelOptions(subframes=7)
    with pytest.raises(ValueError, match="mel_subframes 7"):
        VocoderConfig(inputs="mel", mel_subframes=7)


def test_a_mel_vocoder_reads_its_own_features_and_streams() -> None:
    model = mel_vocoder()
    assert model.config.input_dim == 80 and model.embed.in_channels == 80
    vocoder = NeuralVocoder(model)
    assert vocoder.inputs == "mel"
    feats = vocoder.analyze(vowel(1.3))  # (T, 80)
    assert feats.shape == (frames_for(int(1.3 * SAMPLE_RATE)), 80)
    audio = vocoder.synthesize(feats)
    assert audio.shape == (feats.shape[0] * HOP,)
    stream = StreamingVocoder(vocoder)
    chunks = [stream.push(feats[i : i + 9]) for i in range(0, feats.shape[0], 9)]
    np.testing.assert_allclose(np.concatenate([*chunks, stream.flush()]), audio, atol=1e-5)
    with pytest.raises(ValueError, match=r"mel features for this vocoder must have shape \(T, 80\)"):
        vocoder.synthesize(np.zeros((4, 45), np.float32))


def test_a_mel_run_trains_on_the_audio_and_the_joint_model_refuses_it(tmp_path: Path) -> None:
    from avatar_core.model.inference import JointModel
    from avatar_core.vocoder.config import load_vocoder_config

    write_clip(tmp_path / "data", vowel())
    config = load_vocoder_config(Path(__file__).parents[2] / "configs" / "vocoder" / "tiny.yaml")
    config = VocoderFitConfig.model_validate(
        {
            **config.model_dump(mode="json"),
            "model": {"inputs": "mel", "mel_bands": 40, "mel_subframes": 1},
            "train": {**config.train.model_dump(mode="json"), "steps": 3, "device": "cpu"},
        }
    )
    last = fit(tmp_path / "data", tmp_path / "run", config)
    model, _ = load_vocoder(last)
    assert model.config.inputs == "mel" and model.mean.shape == (40,)
    with pytest.raises(ValueError, match="predicts world features"):
        JointModel(vocoder=NeuralVocoder(model))
