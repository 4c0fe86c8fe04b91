"""A joint model that predicts log-mel frames (``speech: mel``): config, training data, warm start,
speaking through a mel vocoder, pitch through the bands."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from avatar_core.data.samples import DatasetError, load_sample, sample_paths
from avatar_core.model.avflow import AVFlow
from avatar_core.model.config import SIZES, FitConfig, ModelConfig
from avatar_core.model.inference import JointModel
from avatar_core.model.train import fit, load_model, warm_start
from avatar_core.speech.features import HOP, SAMPLE_RATE, frames_for
from avatar_core.speech.mel import MelOptions, band_edges, log_mel, shift_bands
from avatar_core.text.frontend import VOCAB
from avatar_core.vocoder.config import SIZES as VOCODER_SIZES
from avatar_core.vocoder.config import VocoderConfig
from avatar_core.vocoder.infer import NeuralVocoder, bundled_vocoder
from avatar_core.vocoder.model import Vocoder
from tests.avatar_core.test_vocoder import vowel, write_clip

MEL = {"speech": "mel", "mel_bands": 40, "mel_subframes": 1}


def tiny_config(**fields: object) -> ModelConfig:
    return ModelConfig.model_validate({**SIZES["tiny"], **fields})


def mel_vocoder(bands: int = 40) -> NeuralVocoder:
    torch.manual_seed(0)
    config = {**VOCODER_SIZES["tiny"], "inputs": "mel", "mel_bands": bands, "mel_subframes": 1}
    return NeuralVocoder(Vocoder(VocoderConfig.model_validate(config)))


def test_the_config_sizes_the_speech_tower_and_names_a_bad_layout() -> None:
    world, mel = tiny_config(), tiny_config(**MEL)
    assert (world.speech_dim, mel.speech_dim) == (45, 40)
    net = AVFlow(mel, len(VOCAB))
    assert net.out_speech.proj.out_features == 40 and net.in_speech.in_features == 80
    assert net.speech_mean.shape == (40,)
    assert mel.same_network_but_speech(world) and not mel.same_network_but_speech(tiny_config(blocks=3))
    with pytest.raises(ValueError, match="mel_subframes 7"):
        tiny_config(speech="mel", mel_subframes=7)


def test_warm_start_keeps_every_weight_but_the_speech_layers() -> None:
    torch.manual_seed(0)
    world = AVFlow(tiny_config(), len(VOCAB))
    for p in world.parameters():
        torch.nn.init.normal_(p)  # no zero-initialised layer: every copy shows
    mel = AVFlow(tiny_config(**MEL), len(VOCAB))
    warm_start(mel, world, Path("world.pt"))
    ws, ms = world.state_dict(), mel.state_dict()
    for key in ("embed.weight", "speech_blocks.0.attn.qkv.weight", "highways.1.to_motion.weight",
                "out_speech.ada.weight", "out_motion.proj.weight", "head_vae.decoder.0.weight"):  # fmt: skip
        assert torch.equal(ws[key], ms[key]), key
    assert ms["in_speech.weight"].shape == (32, 80)
    assert not ms["out_speech.proj.weight"].any()  # a new output layer starts at zero, as in a new network


def test_a_mel_model_learns_the_audio_s_log_mel_and_silence_while_listening(tmp_path: Path) -> None:
    write_clip(tmp_path, vowel(0.6))
    speak, listen = (load_sample(p) for p in sample_paths(tmp_path))
    config = tiny_config(**MEL)
    layout = config.name("mel")
    assert layout == "mel40x1/1200" and speak.audio is not None
    expected = log_mel(speak.audio.astype(np.float32) / 32768.0, config.mel_options())
    np.testing.assert_allclose(speak.speech_in(layout), expected)
    quiet = listen.speech_in(layout)  # the listening sample's audio is the partner's
    assert quiet.shape == expected.shape and np.ptp(quiet) == 0.0 and quiet.max() < expected.max() - 5
    assert speak.speech_in("world") is speak.speech  # WORLD's: the stored features
    with pytest.raises(DatasetError, match=r"no stored audio.*dyad train pack --config"):
        dataclasses.replace(speak, audio=None).speech_in(layout)
    with pytest.raises(ValueError, match="speech layout 'mel40'"):
        speak.speech_in("mel40")


def test_a_pack_for_a_mel_model_holds_its_frames(tmp_path: Path) -> None:
    """``dyad train pack --config`` a mel config: the samples come back with log-mel speech and no audio,
    and a mel model trains on them; a WORLD model cannot (and says how to pack for it)."""
    from avatar_core.data.pack import pack, unpack

    write_clip(tmp_path / "data", vowel(0.6))
    layout = tiny_config(**MEL).name("mel")
    pack(tmp_path / "data", tmp_path / "mel.npz", layout)
    assert unpack(tmp_path / "mel.npz", tmp_path / "unpacked") == 2
    speak = load_sample(tmp_path / "unpacked" / "000000.npz")
    assert speak.speech_layout == layout and speak.audio is None and speak.speech.shape[1] == 40
    original = load_sample(tmp_path / "data" / "000000.npz")
    np.testing.assert_allclose(speak.speech, original.speech_in(layout), atol=0.02)  # float16
    train = {"steps": 1, "batch_size": 2, "crop_frames": 16, "vae_steps": 1, "device": "cpu"}
    fit(
        tmp_path / "unpacked",
        tmp_path / "run",
        FitConfig.model_validate({"size": "tiny", "model": MEL, "train": train}),
    )
    with pytest.raises(DatasetError, match="no stored audio"):
        fit(
            tmp_path / "unpacked",
            tmp_path / "world",
            FitConfig.model_validate({"size": "tiny", "train": train}),
        )


def test_a_mel_model_warm_started_from_a_world_one_trains_and_speaks(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    write_clip(tmp_path / "data", vowel(1.2))
    train = {"steps": 2, "batch_size": 2, "crop_frames": 16, "vae_steps": 2, "device": "cpu", "log_every": 1}
    world_cfg = FitConfig.model_validate({"size": "tiny", "train": train})
    world = fit(tmp_path / "data", tmp_path / "world", world_cfg)
    mel_cfg = FitConfig.model_validate({"size": "tiny", "model": MEL, "train": train})
    last = fit(tmp_path / "data", tmp_path / "mel", mel_cfg, init=world)
    trained, _ = load_model(last)
    start, _ = load_model(world)
    assert trained.config.speech == "mel" and trained.speech_mean.shape == (40,)
    assert torch.equal(trained.head_vae.scale, start.head_vae.scale)  # the motion side came along
    assert torch.equal(trained.motion_mean, start.motion_mean)

    model = JointModel(last, steps=2, threads=1, vocoder=mel_vocoder())
    out = model.generate("Hello there.", "jf_alpha")
    assert out.speech.shape[1] == 40 and out.audio.size == out.speech.shape[0] * HOP
    assert model.vocoder_for(3.0) is model.vocoder  # a mel vocoder follows shifted bands
    shifted = model.generate("Hello there.", "jf_alpha", pitch_semitones=3.0)
    np.testing.assert_allclose(
        shifted.speech, model.model.config.shift_pitch("mel", out.speech, 3.0), atol=1e-5
    )
    assert model.analyze(vowel(0.5)).shape == (frames_for(SAMPLE_RATE // 2), 40)
    assert model.drive(vowel(0.5)).shape[0] == frames_for(SAMPLE_RATE // 2)
    if not bundled_vocoder("mel").is_file():
        with pytest.raises(ValueError, match=r"no bundled vocoder for mel features.*DYAD_VOCODER_CHECKPOINT"):
            JointModel(last, threads=1)
    with pytest.raises(ValueError, match=r"predicts mel features.*vocoder reads world"):
        JointModel(last, threads=1, vocoder=NeuralVocoder.load(bundled_vocoder()))
    with pytest.raises(ValueError, match=r"predicts mel features.*vocoder reads mel"):
        JointModel(last, threads=1, vocoder=mel_vocoder(bands=48))  # another mel layout


def test_a_band_shift_moves_a_peak_by_the_interval() -> None:
    bands = 80
    centres = band_edges(bands)[1:-1]
    frame = -np.abs(np.log(centres[1:] / 440.0))  # (M-1,) peaked at 440 Hz
    frame = np.concatenate([[frame[0]], frame])[None].astype(np.float32)  # (1, M)
    up = shift_bands(frame, bands, 12.0)  # an octave up: the peak near 880 Hz
    assert abs(centres[int(up.argmax())] / 880.0 - 1.0) < 0.05
    stacked = np.concatenate([frame, frame], axis=1)  # two sub-frames side by side
    np.testing.assert_allclose(shift_bands(stacked, bands, 12.0), np.concatenate([up, up], axis=1))
    assert MelOptions(bands, 1).feature_dim == bands


def test_gta_pairs_of_a_mel_model_feed_a_mel_vocoder(tmp_path: Path) -> None:
    """``dyad vocoder gta`` with a mel model writes its predicted frames; a mel vocoder trains on them."""
    from avatar_core.model.gta import write_gta
    from avatar_core.vocoder.train import Clips
    from avatar_core.vocoder.train import save_checkpoint as save_vocoder

    torch.set_num_threads(1)
    write_clip(tmp_path / "data", vowel(0.8))
    train = {"steps": 1, "batch_size": 2, "crop_frames": 16, "vae_steps": 1, "device": "cpu"}
    config = FitConfig.model_validate({"size": "tiny", "model": MEL, "train": train})
    last = fit(tmp_path / "data", tmp_path / "mel", config)
    vocoder = tmp_path / "vocoder.pt"
    save_vocoder(vocoder, mel_vocoder().model, {})
    assert write_gta(tmp_path / "data", tmp_path / "gta", last, vocoder=vocoder) == 1
    (made,) = (load_sample(p) for p in sample_paths(tmp_path / "gta"))
    assert made.source == "gta:teacher" and made.speech.shape == (made.frames, 40)
    assert made.speech_layout == "mel40x1/1200"
    clips = Clips(tmp_path / "gta", layout="mel40x1/1200")
    assert clips.reload() == 1 and clips.features[0] is not None
    np.testing.assert_array_equal(clips.features[0], made.speech)  # the prediction, not the audio's mel
    with pytest.raises(ValueError, match="vocoder reads world"):
        write_gta(tmp_path / "data", tmp_path / "gta2", last, vocoder=bundled_vocoder())
