"""The Session's voice-to-voice figure on a real clock whose Engine lags: the time the person waited.

A real Session and Engine with the scripted models of ``test_session_states``, on a :class:`RealClock`
driven by a :class:`ManualTime` (time passes only when the Engine sleeps or the test stalls it), so the
wait is measured on the same time source as the Session's figure and nothing depends on the machine.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_session_states import (
    CHUNK,
    RATE,
    ScriptedLLM,
    ScriptedSTT,
    ScriptedTurnModel,
    ScriptedVAD,
    ToneVoice,
    persona,
)

from agent.events import SessionEvent, StateChanged, TurnMetrics
from agent.session import Session
from agent.states import Phase
from agent.turn import TurnDetector
from avatar_core.config import AppearanceConfig, VideoConfig
from avatar_core.engine import Engine, ManualTime, RealClock
from avatar_core.engine.clock import MAX_LAG_S
from avatar_core.frames import AudioFrame
from avatar_core.render.stylized import StylizedRenderer

STALL_S = 3.0


@pytest.mark.parametrize("max_lag_s", [MAX_LAG_S, math.inf], ids=["engine-skips-ahead", "engine-bursts"])
async def test_first_audio_latency_under_a_stalled_engine_is_the_wall_clock_wait(max_lag_s: float) -> None:
    """The user speaks 0.5-2.0 s; as the turn ends the process stalls for 3 s. Whether the Engine then
    skips ahead or bursts the missed frames, the figure is the wait from the end of the user's speech
    to the reply's first audio frame coming out, and the Session's events stay in clock order."""
    time = ManualTime(100.0)
    clock = RealClock(max_lag_s, monotonic=time, sleep=time.sleep)
    p = persona()
    segments = [(0.5, 2.0)]
    turn_taking = p.turn_taking
    vad = ScriptedVAD(segments, turn_taking.min_speech_ms / 1000, turn_taking.end_of_turn_silence_ms / 1000)
    renderer = StylizedRenderer(AppearanceConfig(video=VideoConfig(width=128, height=128)).stylized, 128, 128)
    engine = Engine(ToneVoice(), renderer, p.behaviour, clock=clock)
    stt, llm = ScriptedSTT("What time does the library open?"), ScriptedLLM("It opens at nine.", ttft_s=0.0)
    detector = TurnDetector(turn_taking, ScriptedTurnModel([]))
    session = Session(p, engine, stt, llm, vad=vad, turn_detector=detector)
    events: list[SessionEvent] = []
    session.on(events.append)
    await session.start()

    spoke_until = None  # clock time the user's last voiced audio ended
    heard_at = None  # clock time the reply's first audio frame came out
    stalled = False
    async for frame in engine.frames():
        if not isinstance(frame, AudioFrame):
            continue
        now = clock.now()
        if frame.speech_id is not None and heard_at is None:
            heard_at = now
        t = max(0.0, now - CHUNK / RATE)  # a live microphone: this chunk ends now
        voiced = any(a <= t < b for a, b in segments)
        if voiced:
            spoke_until = t + CHUNK / RATE
        chunk = (0.1 * np.sin(np.arange(CHUNK) * 0.3) if voiced else np.zeros(CHUNK)).astype(np.float32)
        await session.push_audio(chunk, t)
        if not stalled and session.phase is Phase.THINKING:
            stalled = True
            time.stall(STALL_S)  # the process gets no CPU as the user's turn ends
        if any(isinstance(e, TurnMetrics) for e in events) or now > 30.0:
            break
    await session.aclose()
    await engine.aclose()

    assert stalled and spoke_until is not None and heard_at is not None
    (metrics,) = [e for e in events if isinstance(e, TurnMetrics)]
    assert metrics.first_audio is not None and metrics.first_audio > 1000 * STALL_S
    assert metrics.first_audio == pytest.approx(1000 * (heard_at - spoke_until), abs=0.2)
    states = [e for e in events if isinstance(e, StateChanged)]
    assert [e.state for e in states][:3] == ["listening", "thinking", "speaking"]
    assert [e.t for e in states] == sorted(e.t for e in states)  # stamped on one clock
    if max_lag_s == MAX_LAG_S:
        assert engine.skipped_s >= STALL_S - MAX_LAG_S and engine.dropped_video > 0
    else:
        assert engine.skipped_s == 0.0 and engine.dropped_video == 0
