"""The live output clock under CPU stalls: the Engine resumes at real pace instead of bursting.

The clock is a :class:`RealClock` on a :class:`ManualTime`: time passes only when the Engine sleeps or
when the test stalls it (a starved process), so every figure here is exact and no wall time is measured.
"""

from __future__ import annotations

import asyncio
import time as time_module
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from avatar_core.config import AppearanceConfig, BehaviourConfig, VideoConfig
from avatar_core.engine import Engine, ManualTime, RealClock, Utterance, VirtualClock
from avatar_core.engine.clock import MAX_LAG_S
from avatar_core.engine.mixing import CROSSFADE_S
from avatar_core.engine.speech import Speaker, SpeechHandle
from avatar_core.frames import AUDIO_FRAME_S, AUDIO_RATE, AudioFrame, OutputFrame, VideoFrame
from avatar_core.motion import INDEX, MOTION_DIM
from avatar_core.render.stylized import StylizedRenderer
from avatar_core.workers import current_deadline

FPS = 25.0


class RampVoice:
    """A test double for a TTS whose output tells where it is: sample ``i`` of the audio is ``i + 1`` and
    the jaw opens linearly from 0 to 1 over the utterance, so a frame shows which part of it is playing."""

    fps = FPS
    seconds = 1.0

    def utterance(self, text: str) -> Utterance:
        samples = round(self.seconds * AUDIO_RATE)
        audio = (np.arange(samples) + 1).astype(np.int16)  # (S,) 24 kHz
        frames = round(self.seconds * self.fps)
        motion = np.zeros((frames, MOTION_DIM), np.float32)  # (T, D)
        motion[:, INDEX["jaw_open"]] = np.linspace(0.0, 1.0, frames)
        return Utterance(text, audio, motion, self.fps, [], [], complete=True)


def engine(clock: RealClock | VirtualClock) -> Engine:
    renderer = StylizedRenderer(AppearanceConfig(video=VideoConfig(width=128, height=128)).stylized, 128, 128)
    return Engine(RampVoice(), renderer, BehaviourConfig(), fps=FPS, clock=clock)


def test_real_clock_resumes_at_the_present_only_past_its_bound() -> None:
    time = ManualTime(100.0)
    clock = RealClock(0.2, monotonic=time, sleep=time.sleep)
    assert clock.resume_at(0.0) == 0.0  # not started: nothing is late
    clock.origin = 100.0
    time.stall(1.0)
    assert clock.now() == pytest.approx(1.0)
    assert clock.resume_at(0.9) == 0.9  # 0.1 s late: caught up by not sleeping
    assert clock.resume_at(1.5) == 1.5  # early: waits
    assert clock.resume_at(0.5) == pytest.approx(1.0)  # 0.5 s late: resumes now
    assert VirtualClock().resume_at(0.5) == 0.5
    with pytest.raises(ValueError, match="max_lag_s"):
        RealClock(0.0)
    with pytest.raises(ValueError, match="back"):
        time.stall(-1.0)


async def test_a_stalled_engine_resumes_at_real_pace_without_losing_speech() -> None:
    time = ManualTime(100.0)
    clock = RealClock(monotonic=time, sleep=time.sleep)
    eng = engine(clock)
    handle = eng.say("One two three four.")
    frames: list[OutputFrame] = []
    late: list[float] = []  # how far behind the clock each frame was handed out
    stall_s, stalled_at = 2.0, None
    async for frame in eng.frames():
        frames.append(frame)
        late.append(clock.now() - frame.pts_s)
        if not isinstance(frame, AudioFrame):
            continue
        if stalled_at is None and handle.played_s >= 0.4:
            stalled_at = frame.pts_s
            time.stall(stall_s)  # the process gets no CPU for 2 s
        if handle.done and frame.pts_s > (stalled_at or 0.0) + stall_s + 0.2:
            break
    await eng.aclose()
    assert stalled_at is not None and not handle.interrupted
    audio = [f for f in frames if isinstance(f, AudioFrame)]
    video = [f for f in frames if isinstance(f, VideoFrame)]

    # Engine time only grows; it skipped the stall once, on the 20 ms grid, and no frame was handed out
    # later than the bound (no burst of the missed frames).
    audio_pts = np.array([f.pts_s for f in audio])
    steps = np.diff(audio_pts)
    assert (steps > 0).all() and (np.diff([f.pts_s for f in video]) > 0).all()
    jumps = steps[steps > AUDIO_FRAME_S + 1e-9]
    # How much of the stall is skipped depends on where it fell between frames: up to MAX_LAG_S of it may
    # have been caught up by not sleeping.
    assert len(jumps) == 1
    assert stall_s - MAX_LAG_S - 1e-9 <= jumps[0] - AUDIO_FRAME_S <= stall_s + AUDIO_FRAME_S + 1e-9
    assert eng.skipped_s == pytest.approx(jumps[0] - AUDIO_FRAME_S)
    assert max(late) <= MAX_LAG_S

    # Every sample of the speech was played, in order.
    speech = np.concatenate([f.samples for f in audio if f.speech_id == handle.id])
    expected = RampVoice().utterance("").audio
    assert np.array_equal(speech[: expected.size], expected) and not speech[expected.size :].any()
    assert handle.played_s == pytest.approx(RampVoice.seconds)

    # The video frames of the stall were dropped, and counted.
    shown = {round(f.pts_s * FPS) for f in video}
    missing = max(shown) + 1 - len(shown)
    assert eng.dropped_video == missing and missing == pytest.approx(stall_s * FPS, abs=MAX_LAG_S * FPS + 2)

    # The face stays with the speech after the skip: the jaw shows the part of the audio playing.
    heard_from: dict[float, float] = {}  # audio frame pts -> seconds into the utterance at its start
    for a in audio:
        if a.speech_id == handle.id and a.samples[0] > 0:
            heard_from[a.pts_s] = (int(a.samples[0]) - 1) / AUDIO_RATE
    after = [f for f in video if f.pts_s > stalled_at + stall_s and f.state == "speaking"]
    assert len(after) >= 5
    for f in after:
        t = max(p for p in heard_from if p <= f.pts_s + 1e-9)
        position = heard_from[t] + f.pts_s - t
        if position < RampVoice.seconds - AUDIO_FRAME_S:
            shown_frame = f.motion[INDEX["jaw_open"]] * (RampVoice.seconds * FPS - 1)  # motion frame index
            assert abs(shown_frame - position * FPS) <= 0.5 + 1e-4  # the nearest motion frame


async def test_a_virtual_clock_never_skips() -> None:
    eng = engine(VirtualClock())
    count = 0
    async for frame in eng.frames():
        count += isinstance(frame, AudioFrame)
        if count == 50:
            break
    await eng.aclose()
    assert eng.dropped_video == 0 and eng.skipped_s == 0.0


async def test_the_face_waits_with_speech_held_by_a_pause() -> None:
    """A backchannel pauses playback; when it resumes, the face shows the part of the audio playing."""
    eng = engine(VirtualClock())
    handle = eng.say("One two three four.")
    audio: list[AudioFrame] = []
    video: list[VideoFrame] = []
    held = 0
    async for frame in eng.frames():
        if isinstance(frame, VideoFrame):
            video.append(frame)
            continue
        if not isinstance(frame, AudioFrame):
            continue
        audio.append(frame)
        if held == 0 and handle.played_s >= 0.3:
            eng.pause()
            held = 1
        elif 0 < held < 15:  # 0.3 s of held playback
            held += 1
            if held == 15:
                eng.resume()
        if handle.done:
            break
    await eng.aclose()
    heard_from = {a.pts_s: (int(a.samples[0]) - 1) / AUDIO_RATE for a in audio if a.samples[0] > 0}
    resumed = min(p for p in heard_from if heard_from[p] > 0.3)
    settled = resumed + CROSSFADE_S + 1 / FPS  # the face fades back from listening to speech first
    after = [f for f in video if f.pts_s > settled and f.state == "speaking"]
    assert len(after) >= 5
    for f in after:
        t = max(p for p in heard_from if p <= f.pts_s + 1e-9)
        position = heard_from[t] + f.pts_s - t
        if position < RampVoice.seconds - AUDIO_FRAME_S:
            shown_frame = f.motion[INDEX["jaw_open"]] * (RampVoice.seconds * FPS - 1)
            assert abs(shown_frame - position * FPS) <= 0.5 + 1e-4


async def test_a_chunk_not_ready_in_time_is_counted_as_an_underrun() -> None:
    """Playback is gapless while each chunk is ready before the one before ends; when the reply's text
    comes too late (a stalled LLM), the silence inside the reply is counted (``Engine.underruns``)."""
    time = ManualTime(100.0)
    clock = RealClock(monotonic=time, sleep=time.sleep)
    eng = engine(clock)
    more = asyncio.Event()

    async def reply() -> AsyncIterator[str]:
        yield "Good morning. "
        await more.wait()  # the rest of the reply is late
        yield "How are you?"

    handle = eng.say(reply())
    gap_frames = 0
    async for frame in eng.frames():
        if not isinstance(frame, AudioFrame):
            continue
        if handle.played_s >= RampVoice.seconds and not more.is_set():
            gap_frames += 1  # the first chunk has played out; the second has no text yet
            if gap_frames == 10:
                more.set()
        if handle.done:
            break
    await eng.aclose()
    assert handle.played_s == pytest.approx(2 * RampVoice.seconds)
    count, seconds = eng.underruns
    # one silence: the nine frames counted after the one that ended the first chunk, and any more while the
    # late chunk was synthesized (the engine on manual time does not wait for the synthesis thread)
    assert count == 1 and 9 * AUDIO_FRAME_S - 1e-9 <= seconds < RampVoice.seconds


@pytest.mark.parametrize("live", [True, False])
async def test_a_live_engine_renders_each_video_frame_one_frame_ahead(live: bool) -> None:
    """On a real clock a frame is composed and its render started a frame period before it is due, so a
    render slowed by a busy CPU has that long before the frame comes late; offline (virtual clock) at its
    time. Frames are still handed out in order, each after the audio frame it belongs with."""
    time = ManualTime(100.0)
    clock: RealClock | VirtualClock = RealClock(monotonic=time, sleep=time.sleep) if live else VirtualClock()
    eng = engine(clock)
    composed: list[tuple[float, float]] = []  # (frame time, engine time when composed)
    compose = eng._mixer.frame

    def recording(vt: float, *args: Any) -> Any:
        composed.append((vt, clock.now()))
        return compose(vt, *args)

    eng._mixer.frame = recording  # type: ignore[method-assign,assignment]
    shown: list[float] = []
    async for frame in eng.frames():
        if isinstance(frame, VideoFrame):
            shown.append(frame.pts_s)
            assert clock.now() >= frame.pts_s - AUDIO_FRAME_S  # never before the audio frame it belongs with
        if len(shown) == 10:
            break
    await eng.aclose()
    assert shown == pytest.approx([k / FPS for k in range(10)])
    lead = [vt - at for vt, at in composed[:10]]
    if live:
        assert lead[0] == pytest.approx(0.0)  # the first frame: nothing was ahead of it
        assert all(x >= 1 / FPS - 1e-9 for x in lead[1:]), lead
    else:
        assert lead == pytest.approx([0.0] * 10)


class RecordingVoice(RampVoice):
    """:class:`RampVoice` that records, for each chunk, how much audio the reply had left to play when
    its synthesis began and the deadline the synthesis thread was given (seconds from then)."""

    def __init__(self) -> None:
        self.handle: SpeechHandle | None = None
        self.calls: list[tuple[str, float, float]] = []  # (text, audio left, due in)

    def utterance(self, text: str) -> Utterance:
        left = self.handle.ahead_s() if self.handle is not None else 0.0
        self.calls.append((text, left, current_deadline() - time_module.monotonic()))
        return super().utterance(text)


async def test_later_chunks_are_made_just_in_time_with_their_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The text is read as it comes; each later chunk is synthesized once no more than the lead is left
    to play, with the time left as its deadline. On the wall clock (the wait follows playout): a 0.5 s
    lead and 0.5 s chunks, so it takes two seconds."""
    lead = 0.5
    monkeypatch.setattr(Speaker, "SYNTH_LEAD_S", lead)
    voice = RecordingVoice()
    voice.seconds = lead  # each chunk lasts the lead: the third and fourth wait while two are queued
    renderer = StylizedRenderer(AppearanceConfig(video=VideoConfig(width=128, height=128)).stylized, 128, 128)
    eng = Engine(voice, renderer, BehaviourConfig(), fps=FPS, clock=RealClock())
    read_when: list[int] = []  # chunks synthesized when the streamed text had all been read

    async def reply() -> AsyncIterator[str]:
        for part in ("One. ", "Two. ", "Three. ", "Four."):
            yield part
        read_when.append(len(voice.calls))

    voice.handle = handle = eng.say(reply())
    async for frame in eng.frames():
        if isinstance(frame, AudioFrame) and handle.done:
            break
    await eng.aclose()
    assert read_when and read_when[0] <= 1  # the stream (an LLM reply) was read at once, not held up
    assert [text for text, _, _ in voice.calls] == ["One.", "Two.", "Three.", "Four."]
    (_, left1, due1), (_, left2, _), *later = voice.calls
    assert left1 == 0.0 and due1 <= 0.0  # the first chunk is wanted at once
    assert 0.0 < left2 <= lead  # made at once: the first chunk alone lasts no longer than the lead
    for _, left, _ in later:  # made only once no more than the lead was left (not while two were queued)
        assert lead / 2 < left <= lead
    for _, left, due in voice.calls[1:]:  # due when the audio before it has played
        assert due == pytest.approx(left, abs=0.05)
