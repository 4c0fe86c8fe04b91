"""Joint and audio-driven modes in the Engine, with a tiny (untrained) checkpoint: streaming equals
one-shot, no gaps, interruption within one 20 ms frame, deterministic output."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

from avatar_core.config import BehaviourConfig, VoiceConfig
from avatar_core.engine import Engine, VirtualClock
from avatar_core.engine.mixing import CROSSFADE_S
from avatar_core.frames import AUDIO_FRAME_SAMPLES, AUDIO_RATE, AudioFrame, VideoFrame
from avatar_core.joint import JointVoice
from avatar_core.model.avflow import AVFlow
from avatar_core.model.config import SIZES, ModelConfig
from avatar_core.model.inference import JointModel
from avatar_core.model.train import save_checkpoint
from avatar_core.motion import MOTION_DIM
from avatar_core.render.base import Image, Points
from avatar_core.text.frontend import VOCAB

FPS = 25.0


class BlankRenderer:
    """Renders nothing: these tests are about audio and motion timing."""

    width = height = 16

    def render(self, motion: npt.NDArray[np.float32]) -> Image:
        return np.zeros((16, 16, 3), np.uint8)

    def landmarks(self, motion: npt.NDArray[np.float32]) -> Points:
        return np.zeros((68, 2), np.float32)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> JointModel:
    torch.manual_seed(0)
    net = AVFlow(ModelConfig.model_validate(SIZES["tiny"]), len(VOCAB))
    with torch.no_grad():  # an untrained network outputs zeros; perturb it so outputs vary
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        net.duration[-1].bias.fill_(1.6)  # type: ignore[operator]  # about 4 frames (100 ms) per phoneme
    path: Path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, net, {"step": 0})
    return JointModel(path, steps=2, threads=1)


def engine(model: JointModel, driver: bool = False) -> Engine:
    voice = JointVoice(VoiceConfig(), FPS, model)
    return Engine(
        voice,
        BlankRenderer(),
        BehaviourConfig(),
        fps=FPS,
        clock=VirtualClock(),
        driver=model if driver else None,
    )


async def collect(eng: Engine, seconds: float) -> tuple[list[AudioFrame], list[VideoFrame]]:
    audio: list[AudioFrame] = []
    video: list[VideoFrame] = []
    async for frame in eng.frames():
        if isinstance(frame, AudioFrame):
            audio.append(frame)
            if frame.pts_s >= seconds:
                break
        else:
            video.append(frame)
    return audio, video


def test_generate_is_deterministic_and_consistent(model: JointModel) -> None:
    a = model.generate("Please take a seat.")
    b = model.generate("Please take a seat.")
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.motion, b.motion)
    frames = a.motion.shape[0]
    assert a.audio.size == frames * 600 and a.speech.shape[0] == frames
    assert a.motion.shape == (frames, MOTION_DIM)
    assert a.phones[0].symbol == "" and a.phones[-1].end == pytest.approx(frames / 40)


async def test_streamed_joint_speech_equals_one_shot_and_has_no_gaps(model: JointModel) -> None:
    text = "Hello there, welcome to the library."
    one_shot = JointVoice(VoiceConfig(), FPS, model).utterance(text)
    eng = engine(model)
    handle = eng.say(text)
    audio, video = await collect(eng, one_shot.duration_s + 0.3)
    await eng.aclose()
    assert handle.done and not handle.interrupted
    # Contiguous 20 ms frames with exact timestamps, video at 25 fps never ahead of the audio.
    assert [round(f.pts_s * AUDIO_RATE) for f in audio] == [
        k * AUDIO_FRAME_SAMPLES for k in range(len(audio))
    ]
    assert [round(v.pts_s * FPS) for v in video] == list(range(len(video)))
    assert video[-1].pts_s <= audio[-1].pts_s + 0.02
    stream = np.concatenate([f.samples for f in audio])
    start = int(np.flatnonzero([f.speech_id is not None for f in audio])[0]) * AUDIO_FRAME_SAMPLES
    played = stream[start : start + one_shot.audio.size]
    assert np.array_equal(played, one_shot.audio)  # bit-exact: same model, same seed per text
    # After the crossfade from listening, the video shows the model's motion exactly (its complete
    # frames, no second idle layer on top).
    begin = start / AUDIO_RATE + CROSSFADE_S + 0.05
    end = (start + one_shot.audio.size) / AUDIO_RATE
    # Frames wholly inside the utterance: the last, partial one (speech ends within it) may hold.
    speaking = [v for v in video if v.state == "speaking" and begin <= v.pts_s <= end - 1 / FPS]
    assert speaking, f"no speaking frame after the crossfade ({one_shot.duration_s:.2f} s of speech)"
    for v in speaking:
        k = round((v.pts_s - start / AUDIO_RATE) * FPS)
        assert np.allclose(v.motion, one_shot.motion[k], atol=1e-5)


async def test_interrupt_stops_joint_audio_within_one_frame(model: JointModel) -> None:
    eng = engine(model)
    handle = eng.say("Thank you for waiting, the doctor will see you in a few minutes.")
    frames: list[AudioFrame] = []
    stopped_at: float | None = None
    async for frame in eng.frames():
        if not isinstance(frame, AudioFrame):
            continue
        frames.append(frame)
        if stopped_at is None and frame.speech_id is not None and frame.pts_s > 0.5:
            handle.interrupt()
            stopped_at = frame.pts_s
        if stopped_at is not None and frame.pts_s >= stopped_at + 0.2:
            break
    await eng.aclose()
    after = [f for f in frames if stopped_at is not None and f.pts_s > stopped_at]
    assert after and not after[0].samples.any() and after[0].speech_id is None  # the very next frame
    assert all(not f.samples.any() for f in after)
    assert handle.interrupted and handle.done


async def chunks(audio: np.ndarray, size: int) -> AsyncIterator[np.ndarray]:
    for i in range(0, audio.size, size):
        yield audio[i : i + size]
        await asyncio.sleep(0)


async def test_say_audio_plays_external_speech_with_driven_motion(model: JointModel) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(int(1.7 * AUDIO_RATE)) / AUDIO_RATE
    external = (8000 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.int16)
    external += rng.integers(-300, 300, external.size).astype(np.int16)
    eng = engine(model, driver=True)
    handle = eng.say_audio(chunks(external, 480 * 3), text="external speech")
    audio, video = await collect(eng, 2.4)
    await eng.aclose()
    stream = np.concatenate([f.samples for f in audio])
    start = int(np.flatnonzero([f.speech_id is not None for f in audio])[0]) * AUDIO_FRAME_SAMPLES
    assert np.array_equal(stream[start : start + external.size], external)  # every sample, in order
    assert not stream[start + external.size :].any()
    assert handle.done and handle.played_text() == "external speech"
    speaking = np.array([v.motion for v in video if v.state == "speaking"])
    assert len(speaking) >= int(1.7 * FPS) - 1 and np.isfinite(speaking).all()


class RampDriver:
    """A driver whose jaw_open is the audio's mean level per 25 ms: exposes how segments are stitched."""

    def drive(self, audio: np.ndarray) -> np.ndarray:
        frames = -(-audio.size // 600)
        out = np.zeros((frames, MOTION_DIM), np.float32)
        padded = np.pad(audio, (0, frames * 600 - audio.size), mode="edge")
        out[:, 0] = padded.reshape(frames, 600).mean(axis=1)
        return out


async def test_audio_driven_segments_line_up_with_the_audio() -> None:
    """Audio that ramps 0 -> 1 over 3 s: the stitched motion must follow the ramp at the right times
    across the 0.3 s first segment and the 1 s segments with their context."""
    ramp = np.linspace(0, 1, 3 * AUDIO_RATE, endpoint=False)
    external = (ramp * 30000).astype(np.int16)
    voice = JointVoice.__new__(JointVoice)  # never asked to speak text here
    eng = Engine(
        voice, BlankRenderer(), BehaviourConfig(), fps=FPS, clock=VirtualClock(), driver=RampDriver()
    )
    eng.say_audio(chunks(external, 1000))
    audio, video = await collect(eng, 3.5)
    await eng.aclose()
    start = (
        int(np.flatnonzero([f.speech_id is not None for f in audio])[0]) * AUDIO_FRAME_SAMPLES / AUDIO_RATE
    )
    after = [v for v in video if v.state == "speaking" and v.pts_s >= start + CROSSFADE_S + 0.05]
    got = np.array([v.motion[0] for v in after])
    want = np.array([30000 / 32768 * (v.pts_s - start) / 3.0 for v in after])
    assert len(after) > 60
    assert np.abs(got - want).max() < 0.03  # the right audio moment, within a frame or two
    assert np.all(np.diff(got) > -0.005)  # never steps back at a segment boundary


async def test_say_audio_without_a_model_is_a_clear_error(model: JointModel) -> None:
    eng = engine(model, driver=False)
    with pytest.raises(RuntimeError, match="joint model"):
        eng.say_audio(chunks(np.zeros(480, np.int16), 480))
    await eng.aclose()


class ConstantListener:
    """A listening model that records its input and answers with a recognisable pose."""

    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []

    def listen(self, partner: np.ndarray, key: str = "") -> np.ndarray:
        self.calls.append(partner.copy())
        out = np.zeros((partner.shape[0], MOTION_DIM), np.float32)
        out[:, 14] = 0.77  # gaze_x
        return out


async def test_model_listening_follows_the_partner_a_block_ahead() -> None:
    from avatar_core.partner import PartnerFrame

    listener = ConstantListener()
    voice = JointVoice.__new__(JointVoice)
    behaviour = BehaviourConfig(listening="model")
    eng = Engine(voice, BlankRenderer(), behaviour, fps=FPS, clock=VirtualClock(), listener=listener)
    video: list[VideoFrame] = []
    async for frame in eng.frames():
        if isinstance(frame, VideoFrame):
            eng.observe_user(PartnerFrame(t=frame.pts_s, speaking=True, f0_hz=180.0, energy=0.1))
            video.append(frame)
            await asyncio.sleep(0.005)  # let the listening thread keep up with the virtual clock
            if frame.pts_s >= 3.0:
                break
    await eng.aclose()
    gaze = np.array([v.motion[14] for v in video])
    assert listener.calls, "the model was never asked for listening motion"
    assert np.allclose(gaze[-10:], 0.77, atol=1e-6)  # the learned motion is shown as is
    assert abs(gaze[0] - 0.77) > 0.1  # before the first block, the teacher's layer
    assert np.all(np.abs(np.diff(gaze)) < 0.3)  # blocks blend in
    last = listener.calls[-1]
    assert last.shape[1] == 9 and last[-1, 0] == 1.0  # the partner is speaking in what it was given


async def test_teacher_listening_is_the_default() -> None:
    listener = ConstantListener()
    voice = JointVoice.__new__(JointVoice)
    eng = Engine(voice, BlankRenderer(), BehaviourConfig(), fps=FPS, clock=VirtualClock(), listener=listener)
    await collect(eng, 1.5)
    await eng.aclose()
    assert not listener.calls
