"""The always-on Engine in cascade mode: real Kokoro, real teacher, real stylized renderer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from avatar_core.cascade import CascadeVoice
from avatar_core.config import AppearanceConfig, AppSettings, BehaviourConfig, VideoConfig, VoiceConfig
from avatar_core.engine import Engine, Utterance, VirtualClock
from avatar_core.frames import AUDIO_FRAME_SAMPLES, AudioFrame, OutputFrame, VideoFrame
from avatar_core.motion import INDEX
from avatar_core.partner import PartnerFrame
from avatar_core.render import make_renderer

CACHE = AppSettings().cache_dir


@pytest.fixture(scope="module")
def voice() -> CascadeVoice:
    return CascadeVoice(VoiceConfig(), BehaviourConfig(), 25.0, CACHE)


def engine(voice: CascadeVoice, seed: int = 0, **behaviour: float) -> Engine:
    appearance = AppearanceConfig(video=VideoConfig(width=128, height=128))
    return Engine(
        voice, make_renderer(appearance), BehaviourConfig(**behaviour), clock=VirtualClock(), seed=seed
    )


async def collect(eng: Engine, seconds: float) -> tuple[list[AudioFrame], list[VideoFrame]]:
    audio: list[AudioFrame] = []
    video: list[VideoFrame] = []
    async for frame in eng.frames():
        (audio if isinstance(frame, AudioFrame) else video).append(frame)  # type: ignore[arg-type]
        if isinstance(frame, AudioFrame) and frame.pts_s >= seconds - 0.02 + 1e-9:
            break
    return audio, video


async def test_clock_audio_every_20ms_video_at_fps_never_ahead(voice: CascadeVoice) -> None:
    eng = engine(voice)
    order: list[OutputFrame] = []
    async for frame in eng.frames():
        order.append(frame)
        if isinstance(frame, AudioFrame) and frame.pts_s >= 2.0 - 0.02:
            break
    audio = [f for f in order if isinstance(f, AudioFrame)]
    video = [f for f in order if isinstance(f, VideoFrame)]
    assert len(audio) == 100 and len(video) == 50
    assert all(f.samples.shape == (AUDIO_FRAME_SAMPLES,) and f.samples.dtype == np.int16 for f in audio)
    assert np.allclose(np.diff([f.pts_s for f in audio]), 0.02)
    assert np.allclose(np.diff([f.pts_s for f in video]), 0.04)
    last_audio = -1.0
    for frame in order:
        if isinstance(frame, AudioFrame):
            last_audio = frame.pts_s
        else:
            assert last_audio <= frame.pts_s < last_audio + 0.02 + 1e-9  # video never runs ahead
    assert video[0].image.shape == (128, 128, 3)
    await eng.aclose()


async def test_idle_avatar_keeps_moving(voice: CascadeVoice) -> None:
    eng = engine(voice, blinks_per_minute=30)
    audio, video = await collect(eng, 6.0)
    assert all(not f.samples.any() for f in audio)
    assert {f.state for f in video} == {"idle"}
    assert max(f.motion[INDEX["blink_l"]] for f in video) > 0.9  # it blinked
    assert len({f.image.tobytes() for f in video}) > 20
    await eng.aclose()


async def test_say_plays_speech_with_moving_mouth_and_finishes(voice: CascadeVoice) -> None:
    eng = engine(voice)
    text = "Hello, my name is Ada. Maybe I can help you."
    handle = eng.say(text)
    audio, video = await collect(eng, 6.0)
    assert handle.done and not handle.interrupted
    assert handle.played_text() == text
    pcm = np.concatenate([f.samples for f in audio]).astype(np.float32) / 32768
    speech_len = sum(1 for f in audio if f.speech_id == handle.id) * 0.02
    assert abs(speech_len - handle.played_s) < 0.021
    assert np.sqrt(np.mean(pcm[: int(speech_len * 24000)] ** 2)) > 0.02
    speaking = [f for f in video if f.state == "speaking"]
    assert len(speaking) >= int(speech_len * 25) - 2
    jaw = np.array([f.motion[INDEX["jaw_open"]] for f in speaking])
    assert jaw.max() > 0.3 and jaw.std() > 0.05
    assert any(f.motion[INDEX["lips_pressed"]] >= 0.99 for f in speaking)  # the /m/ and /b/ seal
    assert video[-1].state == "idle"
    await eng.aclose()


async def test_interrupt_stops_audio_at_the_next_frame(voice: CascadeVoice) -> None:
    eng = engine(voice)
    handle = eng.say("This is a long answer that the user will interrupt before it is finished.")
    after: list[AudioFrame] = []
    interrupted_at = None
    async for frame in eng.frames():
        if not isinstance(frame, AudioFrame):
            continue
        if interrupted_at is None and handle.played_s >= 1.0:
            eng.interrupt()
            interrupted_at = frame.pts_s
        elif interrupted_at is not None:
            after.append(frame)
            if len(after) >= 10:
                break
    await handle
    assert handle.interrupted
    assert all(not f.samples.any() and f.speech_id is None for f in after)
    words = handle.played_text().split()
    assert 0 < len(words) < len(handle.text.split())  # type: ignore[union-attr]
    assert handle.text.startswith(handle.played_text())  # type: ignore[union-attr]
    await eng.aclose()


@dataclass
class CountingVoice:
    """The real voice, recording each chunk it is asked to synthesize."""

    voice: CascadeVoice
    made: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.voice.fps

    def utterance(self, text: str) -> Utterance:
        self.made.append(text)
        return self.voice.utterance(text)


async def test_held_speech_makes_its_first_chunk_and_plays_only_when_released(voice: CascadeVoice) -> None:
    counting = CountingVoice(voice)
    eng = engine(counting)  # type: ignore[arg-type]
    text = "Sure. The library opens at nine in the morning, and it closes at six in the evening."
    held = eng.say(text, held=True)
    dropped = eng.say("Nobody will want this answer.", held=True)
    while held.first_ready_wall is None or dropped.first_ready_wall is None:
        await asyncio.sleep(0.01)
    audio, _ = await collect(eng, 1.0)
    await asyncio.sleep(0.2)  # time enough for a second chunk, were it made
    assert all(not f.samples.any() for f in audio) and not eng.speaking
    assert len(counting.made) == 2  # the first chunk of each, nothing more
    eng.interrupt()  # stops queued speech only: held speech is its owner's
    assert not held.done
    dropped.interrupt()
    eng.release(dropped)  # too late: it was dropped
    eng.release(held)
    assert eng.speaking
    audio, _ = await collect(eng, 8.0)
    assert held.done and not held.interrupted and held.played_text() == text
    assert dropped.interrupted and dropped.played_s == 0
    assert {f.speech_id for f in audio} == {held.id, None}
    assert len(counting.made) > 2
    await eng.aclose()


async def test_streamed_text_is_spoken(voice: CascadeVoice) -> None:
    async def tokens() -> AsyncIterator[str]:
        for word in ["Sure,", "I", "can", "do", "that.", "Give", "me", "one", "moment", "please."]:
            await asyncio.sleep(0)
            yield word + " "

    eng = engine(voice)
    handle = eng.say(tokens())
    await collect(eng, 5.0)
    assert handle.done and handle.played_text() == "Sure, I can do that. Give me one moment please."
    await eng.aclose()


async def test_listening_state_and_backchannel_nods(voice: CascadeVoice) -> None:
    eng = engine(voice, backchannel_rate=1.0)
    pitches: list[float] = []
    states: set[str] = set()
    async for frame in eng.frames():
        if isinstance(frame, AudioFrame):
            t = frame.pts_s
            speaking = 0.3 < t < 2.5
            eng.observe_user(PartnerFrame(t, speaking, 180.0 if speaking else 0.0, 0.1, face_visible=True))
            if t > 4.0:
                break
        else:
            pitches.append(float(frame.motion[INDEX["head_pitch"]]))
            states.add(frame.state)
    assert "listening" in states
    assert max(pitches[int(2.5 * 25) :]) > 0.04  # a nod after the user's pause
    await eng.aclose()


async def test_engine_is_deterministic(voice: CascadeVoice) -> None:
    runs = []
    for _ in range(2):
        fresh = CascadeVoice(VoiceConfig(), BehaviourConfig(), 25.0, CACHE)
        eng = engine(fresh, seed=11)
        eng.say("Good morning.")
        audio, video = await collect(eng, 2.0)
        runs.append((np.concatenate([f.samples for f in audio]), np.array([f.motion for f in video])))
        await eng.aclose()
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])


class FailingVoice:
    """Real voice, but synthesis of one chunk fails (a test double for a broken TTS)."""

    def __init__(self, inner: CascadeVoice) -> None:
        self.inner = inner
        self.fps = inner.fps

    def utterance(self, text: str) -> Utterance:
        if "broken" in text:
            raise RuntimeError("synthesis failed")
        return self.inner.utterance(text)


async def test_synthesis_failure_skips_the_speech_and_the_engine_keeps_running(
    voice: CascadeVoice, caplog: pytest.LogCaptureFixture
) -> None:
    appearance = AppearanceConfig(video=VideoConfig(width=128, height=128))
    eng = Engine(FailingVoice(voice), make_renderer(appearance), BehaviourConfig(), clock=VirtualClock())
    bad = eng.say("This is broken.")
    good = eng.say("Still here.")
    await collect(eng, 3.0)
    assert bad.done and bad.played_text() == ""
    assert good.done and good.played_text() == "Still here."
    assert "synthesis failed" in caplog.text
    await eng.aclose()
