"""The persona's voice in joint mode: the speaker selects the checkpoint's speaker, rate acts through the
predicted durations, pitch through F0, and an unknown speaker is an error that names the valid ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avatar_core.config import VoiceConfig
from avatar_core.joint import JointVoice
from avatar_core.model.avflow import FACE_DIM, AVFlow
from avatar_core.model.checkpoint import (
    UnknownSpeakerError,
    bundled_checkpoint,
    checkpoint_voices,
    read_header,
)
from avatar_core.model.config import SIZES, ModelConfig
from avatar_core.model.flow import Batch, losses
from avatar_core.model.inference import GENERATED_LEAD_FRAMES, LEAD_FRAMES, JointModel
from avatar_core.model.train import save_checkpoint
from avatar_core.motion import MOTION_DIM
from avatar_core.partner import PARTNER_DIM
from avatar_core.speech import features
from avatar_core.speech.features import APERIODIC, FEATURE_DIM, LF0, MODEL_FPS, SPECTRAL, VOICED
from avatar_core.teacher.speaking import Phone
from avatar_core.text.frontend import VOCAB

TEXT = "Good morning, the clinic opens at eight thirty."
TWO = ("jf_alpha", "jm_kumo")
F0_HZ = (220.0, 110.0)  # what each synthetic speaker's speech sits at


def synthetic_batch(rng: torch.Generator, envelopes: torch.Tensor, b: int = 8, n: int = 8) -> Batch:
    """Random phonemes, 4 frames each; each row's speaker sets its F0 and its spectral envelope."""
    t = 4 * n
    speaker = torch.randint(0, 2, (b,), generator=rng)
    speech = torch.zeros(b, t, FEATURE_DIM)
    speech[..., LF0] = torch.log(torch.tensor(F0_HZ))[speaker][:, None]
    speech[..., VOICED] = 1.0
    speech[..., SPECTRAL] = envelopes[speaker][:, None] + 0.05 * torch.randn(b, t, 40, generator=rng)
    speech[..., APERIODIC] = -20.0
    speech += 0.01 * torch.randn(b, t, FEATURE_DIM, generator=rng)
    return Batch(
        tokens=torch.randint(1, len(VOCAB), (b, n), generator=rng),
        token_valid=torch.ones(b, n, dtype=torch.bool),
        durations=torch.full((b, n), 4),
        offset=torch.zeros(b, dtype=torch.long),
        speech=speech,
        motion=torch.zeros(b, t, MOTION_DIM),
        partner=torch.zeros(b, t, PARTNER_DIM),
        valid=torch.ones(b, t, dtype=torch.bool),
        speaker=speaker,
    )


@pytest.fixture(scope="module")
def two_speaker_model(tmp_path_factory: pytest.TempPathFactory) -> JointModel:
    """A tiny network taught two synthetic speakers (only the speaker embedding tells them apart)."""
    torch.set_num_threads(1)  # a tiny network: more threads only contend with each other
    torch.manual_seed(0)
    config = ModelConfig.model_validate(
        {**SIZES["tiny"], "voices": TWO, "dropout": 0.0, "audio_driven_p": 0.0}
    )
    net = AVFlow(config, len(VOCAB))
    rng = torch.Generator().manual_seed(0)
    envelopes = torch.randn(2, 40, generator=rng)  # (2, 40) one coded envelope per speaker
    sample = synthetic_batch(rng, envelopes, b=64)
    net.speech_mean.copy_(sample.speech.mean((0, 1)))
    net.speech_std.copy_(sample.speech.std((0, 1)).clamp(min=1e-2))
    net.motion_std.fill_(1.0)
    net.motion_mean.zero_()
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    for _ in range(150):
        parts = losses(net, synthetic_batch(rng, envelopes))
        opt.zero_grad()
        parts["total"].backward()  # type: ignore[no-untyped-call]
        opt.step()
    path: Path = tmp_path_factory.mktemp("ckpt") / "two.pt"
    save_checkpoint(path, net.eval(), {"step": 150})
    assert FACE_DIM < MOTION_DIM
    return JointModel(path, steps=4, threads=1)


def test_speaker_selects_the_voice_mean_f0_and_envelope_differ(two_speaker_model: JointModel) -> None:
    model = two_speaker_model
    assert model.voices == TWO and checkpoint_voices(model.path) == TWO
    high = JointVoice(VoiceConfig(speaker="jf_alpha"), 25.0, model)
    low = JointVoice(VoiceConfig(speaker="jm_kumo"), 25.0, model)
    assert (high.speaker, low.speaker) == TWO
    a = model.generate(TEXT, high.speaker)
    b = model.generate(TEXT, low.speaker)
    assert a.speech.shape[0] > 20  # the duration predictor learned 4 frames a phoneme

    def mean_f0(speech: np.ndarray) -> float:
        return float(np.exp(np.median(speech[:, LF0])))

    assert mean_f0(a.speech) > 1.4 * mean_f0(b.speech)  # trained at 220 Hz and 110 Hz (the vocoder's F0)
    envelope_gap = np.linalg.norm(a.speech[:, SPECTRAL].mean(0) - b.speech[:, SPECTRAL].mean(0))
    within = np.linalg.norm(a.speech[:, SPECTRAL].std(0))
    assert envelope_gap > 2.0 * within


def test_unknown_speaker_in_joint_mode_names_the_valid_ones(two_speaker_model: JointModel) -> None:
    with pytest.raises(UnknownSpeakerError) as caught:
        JointVoice(VoiceConfig(speaker="jf_nezumi"), 25.0, two_speaker_model)
    assert "jf_alpha, jm_kumo" in str(caught.value) and "jf_nezumi" in str(caught.value)
    with pytest.raises(UnknownSpeakerError):
        two_speaker_model.generate(TEXT, "jf_tebukuro")
    # A cascade voice only lets the model drive the face from Kokoro's audio: no error there.
    assert JointVoice(VoiceConfig(mode="cascade", speaker="jf_nezumi"), 25.0, two_speaker_model).speaker


@pytest.fixture(scope="module")
def committed() -> JointModel:
    return JointModel(bundled_checkpoint(), threads=1)


def test_rate_scales_the_predicted_durations(committed: JointModel) -> None:
    normal = JointVoice(VoiceConfig(), 25.0, committed).utterance(TEXT)
    slow = JointVoice(VoiceConfig(rate=0.8), 25.0, committed).utterance(TEXT)
    fast = JointVoice(VoiceConfig(rate=1.25), 25.0, committed).utterance(TEXT)

    def speech_s(phones: list[Phone]) -> float:  # first to last phoneme: the pads are fixed silence
        spoken = [p for p in phones if p.symbol]
        return float(spoken[-1].end - spoken[0].start)

    assert speech_s(slow.phones) / speech_s(normal.phones) == pytest.approx(1.25, abs=0.03)
    assert speech_s(fast.phones) / speech_s(normal.phones) == pytest.approx(0.8, abs=0.03)
    assert slow.audio.size > normal.audio.size > fast.audio.size
    assert slow.motion.shape[0] > normal.motion.shape[0]  # the face follows the same durations


def test_the_lead_is_generated_as_trained_and_cut_to_50_ms(committed: JointModel) -> None:
    out = committed.generate(TEXT, partner=np.zeros((5, PARTNER_DIM), np.float32))
    assert GENERATED_LEAD_FRAMES > LEAD_FRAMES
    assert out.phones[0].symbol == "" and out.phones[0].end == pytest.approx(LEAD_FRAMES / MODEL_FPS)
    assert out.audio.size == out.speech.shape[0] * features.HOP == out.motion.shape[0] * features.HOP
    assert out.phones[-1].end == pytest.approx(out.speech.shape[0] / MODEL_FPS)
    # The cut falls in silence: the first kept frame is quiet (the first word's onset starts in the second).
    first = out.audio[: features.HOP]
    assert np.sqrt(np.mean(first**2)) < 0.3 * np.sqrt(np.mean(out.audio**2))


def test_pitch_shifts_the_spoken_f0(committed: JointModel) -> None:
    assert committed.vocoder_for(4.0).follows_pitch and committed.vocoder_for(0.0) is committed.vocoder
    plain = committed.generate(TEXT)
    up = committed.generate(TEXT, pitch_semitones=4.0)

    def heard_f0(audio: np.ndarray) -> float:
        f = features.analyze(audio)
        return float(np.exp(np.median(f[f[:, VOICED] > 0, LF0])))

    assert heard_f0(up.audio) / heard_f0(plain.audio) == pytest.approx(2 ** (4 / 12), rel=0.06)


def test_checkpoint_header_is_read_without_the_network(committed: JointModel) -> None:
    header = read_header(committed.path)
    assert checkpoint_voices(committed.path) == committed.voices
    assert header["state_dict"] is not None and header["model_config"]["d_model"] > 0


def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read the checkpoint"):
        checkpoint_voices(bad)
