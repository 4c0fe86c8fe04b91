"""The soak bench's own bookkeeping (``bench/soak.py``), without models: the simulated person's
microphone, its backchannel, how replies, backchannels and barge-ins are counted, and its memory trace."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import tracemalloc
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np

from agent.events import TurnMetrics
from agent.persona import load_persona


def _soak() -> ModuleType:
    path = Path(__file__).parents[2] / "bench" / "soak.py"
    spec = importlib.util.spec_from_file_location("bench_soak", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_soak"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


soak: Any = _soak()


async def test_mic_delivers_speech_then_silence_in_order() -> None:
    mic = soak.Mic(cast(Any, object()))
    clip = np.linspace(0.1, 0.9, 1000, dtype=np.float32)  # (1000,)
    clip[:300] = 0.0  # voiced from sample 300
    onsets: list[float] = []
    done = mic.say(clip, onsets.append)
    out = np.concatenate([mic._take(320) for _ in range(4)])  # 4 x 20 ms
    assert np.array_equal(out[:1000], clip) and not out[1000:].any()  # the clip, then silence
    assert done.done() and len(onsets) == 1
    assert not mic._take(320).any()


def test_backchannel_is_heard_but_shorter_than_a_barge_in() -> None:
    persona = load_persona("library_receptionist")
    long_mm = np.concatenate([np.zeros(800), 0.5 * np.ones(16_000)]).astype(np.float32)  # 1 s voiced
    clip = soak.backchannel_clip(long_mm, persona)
    seconds = clip.size / soak.USER_RATE
    turn_taking = persona.turn_taking
    assert turn_taking.min_speech_ms / 1000 <= seconds < turn_taking.barge_in_min_speech_ms / 1000 - 0.06
    assert abs(clip[0]) > 0.4 and clip[-1] == 0.0  # starts voiced, fades out


def test_replies_backchannels_and_barge_ins_are_counted() -> None:
    meter = soak.Meter()
    transport = cast(Any, type("T", (), {"meter": meter, "_events": None, "_index": 0}))()
    count = soak.MeasuringTransport._count_reply.__get__(transport)

    meter.overlap = ("backchannel", 2)
    count(TurnMetrics(1.0, 2, first_audio=700.0))
    meter.overlap = ("barge-in", 3)
    meter.barge_in_silent(150.0)  # the audio went quiet before the reply was known to be cut off
    count(TurnMetrics(2.0, 3, first_audio=800.0, interrupted=True))
    meter.overlap = ("barge-in", 4)
    meter.barge_in_onset = 10.0
    count(TurnMetrics(3.0, 4, first_audio=900.0, interrupted=True))  # cut off, audio not yet quiet
    meter.barge_in_silent(120.0)
    count(TurnMetrics(4.0, 5))  # no sound at all

    tally = meter.tally
    assert (tally.answered, tally.interrupted, tally.unanswered) == (1, 2, 1)
    assert (tally.backchannels, tally.backchannels_kept) == (1, 1)
    assert (tally.barge_ins, tally.barge_ins_stopped) == (2, 2)
    assert meter.voice_to_voice_ms == [700.0]
    assert meter.barge_in_stop_ms == [150.0, 120.0]
    assert meter.overlap is None
    assert tally.plus(tally).minus(tally) == tally


def test_loop_lag_watcher_stops_when_cancelled() -> None:
    async def run() -> None:
        lag = soak.LoopLag()
        task = asyncio.create_task(soak.watch_loop(lag))
        await asyncio.sleep(0.12)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert lag.run_max_ms >= 0.0 and task.cancelled()

    asyncio.run(run())


def test_memory_trace_reports_python_growth_and_malloc_counts() -> None:
    trace = soak.MemoryTrace()
    trace.start()
    try:
        kept = [bytearray(4096) for _ in range(500)]  # about 2 MB allocated on one line after the start
        report = trace.report()
    finally:
        tracemalloc.stop()
    assert report["python_traced_mb"] >= 1.5
    top = report["python_growth"][0]
    assert "test_soak_bench.py" in top["where"] and top["kb"] >= 1900 and top["count"] >= 500
    if "malloc_in_use_mb" in report:  # glibc >= 2.33
        assert report["malloc_in_use_mb"] > 0
    assert len(kept) == 500


def test_resident_memory_is_split_into_heap_and_mapped_files() -> None:
    parts = soak.rss_parts()
    if sys.platform.startswith("linux"):
        assert set(parts) == {"rss_anon_mb", "rss_file_mb"} and min(parts.values()) > 0
    else:
        assert parts == {}
