"""A long session in real time: does anything drift, grow or freeze? Prints JSON lines, writes
``bench/results/soak.json`` (or ``--out``).

    nice .venv/bin/python bench/soak.py [--minutes 60] [--report-every 5] [--sessions 1] [--out PATH]

A simulated person (Kokoro speech in a voice other than the avatar's, synthesised before the sessions
start) talks to the avatar through the real Session, Engine and a transport
(:class:`MeasuringTransport`, an :class:`~integrations.transport.AvatarTransport` that plays frames
out at the wall clock as a room's audio source does). Its microphone (:class:`Mic`) delivers 20 ms
of audio every 20 ms of wall time, speech or silence, as a device does. It asks a question, waits for
the answer to start, then lets it play, says a backchannel ("mm-hm") over it, or barges in with the
next question.

Every ``--report-every`` minutes it prints one JSON line for the interval since the last one: RSS,
threads, open files, asyncio tasks, CPU (the LLM servers' and render processes' apart), video fps and
frame gaps over 100 ms, the event loop's worst lag (a starved loop is the bench's fault, a late engine
the product's), audio/video drift (audio seconds sent vs video frames sent / fps vs the wall clock),
voice-to-voice p50/p95 and the turns,
backchannels and barge-ins counted from the Session's events. ``--events`` writes every Session event
as a JSON line, for finding out why a turn went wrong. ``--trace-memory`` adds, to every report, where
memory went: the Python heap traced by ``tracemalloc`` (started once the models are loaded) with the
source lines that grew most since then, and glibc's own count of the bytes ``malloc`` has handed out
and holds (``mallinfo2``), so growth in Python objects, in native allocations and in heap fragmentation
can be told apart. Tracing slows Python's allocations: use it to find a leak, not for the other figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import sys
import threading
import time
import tracemalloc
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import numpy.typing as npt
import psutil
from scipy.signal import resample_poly

from agent.events import AgentTranscript, ErrorEvent, SessionEvent, TurnMetrics, UserTranscript, to_dict
from agent.persona import Persona, load_persona
from avatar_core.config import AppSettings
from avatar_core.engine import Engine, RealClock
from avatar_core.frames import AUDIO_RATE, AudioFrame, OutputFrame
from avatar_core.tts.kokoro import KokoroTTS
from integrations.lifecycle import prepare_process
from integrations.stack import AvatarStack, SharedModels, open_stack
from integrations.transport import USER_RATE, AvatarTransport

RESULTS = Path(__file__).parent / "results"
QUESTIONS = [
    "What time does the library open?", "Can I renew my books online?", "Where is the children's section?",
    "How much does printing cost?", "Do you have any study rooms free today?", "Is there a cafe nearby?",
    "How do I get a library card?", "Can I borrow a laptop?", "Are you open on Sunday?",
]  # fmt: skip
BACKCHANNEL = "Mm-hm."
PERSON_VOICES = ("jf_alpha", "jm_kumo")  # the person speaks in the first that is not the avatar's
GAP_S = 0.1
CHUNK_S = 0.02
CHUNK = int(USER_RATE * CHUNK_S)  # 20 ms of 16 kHz audio
MAX_BURST = 50  # a stalled microphone delivers at most 1 s at once; older audio is lost
ONSET_LEVEL = 0.02  # |sample| that marks the start of speech in a clip
REPLY_START_S = 30.0  # how long the person waits for an answer to become audible
REPLY_END_S = 90.0  # ... and for it to finish
OVERLAP_AFTER_S = 1.0  # speech into the answer before a backchannel or barge-in
LOOP_TICK_S = 0.05
MIX = (0.6, 0.25, 0.15)  # once an answer is audible: let it play, backchannel, barge in
THINK_S = (1.0, 1.0)  # seconds from the end of an answer to the next question: the least and the most

Overlap = Literal["backchannel", "barge-in"]


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


# ---------------------------------------------------------------------------------------------------
# What is measured
# ---------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Counts of one session's conversation and output (cumulative)."""

    questions: int = 0  # asked by the person
    user_turns: int = 0  # final user transcripts
    answered: int = 0  # replies that became audible and played to the end
    interrupted: int = 0  # replies cut off (a barge-in)
    unanswered: int = 0  # replies that never made a sound (an empty transcript, an error...)
    no_reply: int = 0  # questions after which nothing became audible within REPLY_START_S
    backchannels: int = 0  # said over an answer (counted when the answer ends)
    backchannels_kept: int = 0  # ... after which the answer played on
    barge_ins: int = 0  # questions said over an answer (counted when the answer ends)
    barge_ins_stopped: int = 0  # ... that interrupted it
    errors: int = 0  # error events
    video_frames: int = 0
    audio_samples: int = 0
    gaps_over_100ms: int = 0
    mic_overruns: int = 0  # microphone audio lost because the bench stalled for over MAX_BURST

    def minus(self, other: Tally) -> Tally:
        """The counts since ``other`` (an earlier copy)."""
        return Tally(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def plus(self, other: Tally) -> Tally:
        """Both sessions' counts together."""
        return Tally(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


@dataclass
class Meter:
    """What one session's output and conversation looked like on the wall clock."""

    tally: Tally = field(default_factory=Tally)
    started: float | None = None  # monotonic time of engine time 0
    last_video: float | None = None
    max_gap_ms: float = 0.0  # since the last report
    run_max_gap_ms: float = 0.0  # over the whole run
    voice_to_voice_ms: list[float] = field(default_factory=list)  # as the Session measures it
    heard_voice_to_voice_ms: list[float] = field(default_factory=list)  # end of speech -> reply sent
    turn_end: dict[int, float] = field(default_factory=dict)  # turn -> monotonic end of the user's speech
    turn_speech: dict[int, str] = field(default_factory=dict)  # turn -> the speech id of its reply
    heard_at: dict[str, float] = field(default_factory=dict)  # speech id -> monotonic first frame sent
    barge_in_stop_ms: list[float] = field(default_factory=list)  # barge-in onset -> avatar audio silent
    answers: Counter[str] = field(default_factory=Counter)  # how replies were decided
    errors: list[str] = field(default_factory=list)
    speaking_turn: int | None = None  # the turn whose answer is being played
    overlap: tuple[Overlap, int] | None = None  # what the person said over which turn's answer
    barge_in_onset: float | None = None  # monotonic time the barge-in's speech began, until silence
    barge_in_silent_ms: float | None = None  # onset -> the first silent audio frame after it
    barge_in_confirmed: bool = False  # the reply was interrupted (before its audio went silent)
    engine: Engine | None = None  # its skipped time and dropped video frames (a starved process)

    def barge_in_silent(self, ms: float) -> None:
        """The avatar's audio went silent ``ms`` after a barge-in began (counted once the reply is
        known to have been interrupted, not just ended)."""
        self.barge_in_onset = None
        if self.barge_in_confirmed:
            self.barge_in_stop_ms.append(ms)
            self.barge_in_confirmed = False
        else:
            self.barge_in_silent_ms = ms

    def barge_in_outcome(self, interrupted: bool) -> None:
        """The reply a barge-in was said over ended, ``interrupted`` or not."""
        if interrupted and self.barge_in_silent_ms is not None:
            self.barge_in_stop_ms.append(self.barge_in_silent_ms)
        self.barge_in_confirmed = interrupted and self.barge_in_silent_ms is None
        if not self.barge_in_confirmed:
            self.barge_in_onset = None
        self.barge_in_silent_ms = None


@dataclass
class LoopLag:
    """How late the event loop wakes up (its worst since the last report)."""

    max_ms: float = 0.0
    over_100ms: int = 0
    run_max_ms: float = 0.0  # over the whole run
    run_over_100ms: int = 0


async def watch_loop(lag: LoopLag) -> None:
    """Measure the event loop's scheduling delay until cancelled."""
    while True:
        start = time.monotonic()
        await asyncio.sleep(LOOP_TICK_S)
        late = 1000 * (time.monotonic() - start - LOOP_TICK_S)
        lag.max_ms = max(lag.max_ms, late)
        lag.over_100ms += late > 100
        lag.run_max_ms = max(lag.run_max_ms, late)
        lag.run_over_100ms += late > 100


class MeasuringTransport(AvatarTransport):
    """Frames are 'sent' when their time comes on the wall clock, and measured; the Session's events
    are counted (and written to ``events``, one JSON line each, if given)."""

    def __init__(
        self, stack: AvatarStack, meter: Meter, events: IO[str] | None = None, index: int = 0
    ) -> None:
        super().__init__(stack, name="soak")
        self.meter = meter
        self._events = events
        self._index = index

    async def send_frame(self, frame: OutputFrame) -> None:
        meter = self.meter
        now = time.monotonic()
        if meter.started is None:
            meter.started = now - frame.pts_s
        wait = meter.started + frame.pts_s - now
        if wait > 0:
            await asyncio.sleep(wait)  # a room's audio source plays out in real time the same way
        now = time.monotonic()
        if isinstance(frame, AudioFrame):
            meter.tally.audio_samples += frame.samples.size
            if frame.speech_id is not None and frame.speech_id not in meter.heard_at:
                meter.heard_at[frame.speech_id] = now
            if frame.speech_id is None and meter.barge_in_onset is not None:
                meter.barge_in_silent(round(1000 * (now - meter.barge_in_onset), 1))
            return
        meter.tally.video_frames += 1
        if meter.last_video is not None:
            gap = now - meter.last_video
            meter.max_gap_ms = max(meter.max_gap_ms, 1000 * gap)
            meter.run_max_gap_ms = max(meter.run_max_gap_ms, 1000 * gap)
            meter.tally.gaps_over_100ms += gap > GAP_S
        meter.last_video = now

    def publish(self, event: SessionEvent) -> None:
        meter, tally = self.meter, self.meter.tally
        if isinstance(event, UserTranscript) and event.final:
            tally.user_turns += 1
            clock = self.engine.clock
            if event.end is not None and isinstance(clock, RealClock) and clock.origin is not None:
                meter.turn_end[event.turn] = clock.origin + event.end
        elif isinstance(event, AgentTranscript):
            meter.turn_speech[event.turn] = event.speech_id
            if not event.final:
                meter.speaking_turn = event.turn
        elif isinstance(event, TurnMetrics):
            self._count_reply(event)
        elif isinstance(event, ErrorEvent):
            tally.errors += 1
            meter.errors.append(f"{event.source}: {event.message}")
        if self._events is not None:
            self._events.write(json.dumps({"session": self._index, **to_dict(event)}) + "\n")

    def _count_reply(self, event: TurnMetrics) -> None:
        meter, tally = self.meter, self.meter.tally
        if event.interrupted:
            tally.interrupted += 1
        elif event.first_audio is None:
            tally.unanswered += 1
        else:
            tally.answered += 1
            meter.voice_to_voice_ms.append(event.first_audio)
        # The same figure on the wall clock: from the end of the user's speech until the reply's first
        # frame was sent. It exceeds the Session's figure when the engine runs behind the wall clock.
        end, speech = meter.turn_end.pop(event.turn, None), meter.turn_speech.pop(event.turn, None)
        heard = meter.heard_at.pop(speech, None) if speech is not None else None
        if not event.interrupted and end is not None and heard is not None:
            meter.heard_voice_to_voice_ms.append(round(1000 * (heard - end), 1))
        meter.answers[event.answer or "none"] += 1
        if meter.overlap is not None and meter.overlap[1] <= event.turn:
            kind, turn = meter.overlap
            if turn == event.turn:
                if kind == "backchannel":
                    tally.backchannels += 1
                    tally.backchannels_kept += not event.interrupted
                else:
                    tally.barge_ins += 1
                    tally.barge_ins_stopped += event.interrupted
                    meter.barge_in_outcome(event.interrupted)
            meter.overlap = None

    async def close_media(self) -> None:
        return None


# ---------------------------------------------------------------------------------------------------
# The simulated person
# ---------------------------------------------------------------------------------------------------


def person_voice(persona: Persona) -> str:
    """A Kokoro voice that is not the avatar's, so the two are never confused."""
    return next(v for v in PERSON_VOICES if v != persona.voice.speaker)


def user_clips(persona: Persona) -> tuple[list[npt.NDArray[np.float32]], npt.NDArray[np.float32]]:
    """The person's questions and backchannel as 16 kHz float32 speech (blocking: synthesises them)."""
    tts = KokoroTTS(AppSettings().cache_dir)
    voice = person_voice(persona)

    def speech(text: str) -> npt.NDArray[np.float32]:
        audio = resample_poly(tts.synthesize(text, voice), 2, 3)  # 24 -> 16 kHz
        return np.asarray(audio, np.float32)

    return [speech(q) for q in QUESTIONS], backchannel_clip(speech(BACKCHANNEL), persona)


def backchannel_clip(clip: npt.NDArray[np.float32], persona: Persona) -> npt.NDArray[np.float32]:
    """A short backchannel: Kokoro's "Mm-hm." is voiced for about 0.8 s, longer than the speech that
    interrupts the avatar (``barge_in_min_speech_ms``), so it is cut to a quarter of the way from the
    shortest speech the VAD confirms (``min_speech_ms``) to that (the VAD's voiced run can outlast the
    voice by a window or two of 32 ms), and faded out."""
    turn_taking = persona.turn_taking
    keep_s = (
        turn_taking.min_speech_ms + (turn_taking.barge_in_min_speech_ms - turn_taking.min_speech_ms) / 4
    ) / 1000
    voiced = np.flatnonzero(np.abs(clip) > ONSET_LEVEL)
    start = int(voiced[0]) if voiced.size else 0
    cut = clip[start : start + int(keep_s * USER_RATE)].copy()  # (S,)
    fade = min(cut.size, int(0.04 * USER_RATE))
    cut[cut.size - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return cut


@dataclass
class _Utterance:
    samples: npt.NDArray[np.float32]  # (S,) 16 kHz
    done: asyncio.Future[None]
    onset: int  # first voiced sample
    on_onset: Callable[[float], None] | None
    offset: int = 0


class Mic:
    """The person's microphone: 20 ms of 16 kHz audio every 20 ms of wall time on an absolute
    schedule (after a stall, what is due is delivered at once, as a device buffer does), the queued
    speech or else silence. :meth:`run` is its one task."""

    def __init__(self, transport: MeasuringTransport) -> None:
        self.transport = transport
        self._queue: deque[_Utterance] = deque()

    def say(
        self, clip: npt.NDArray[np.float32], on_onset: Callable[[float], None] | None = None
    ) -> asyncio.Future[None]:
        """Queue ``clip`` (S,); the future is done once all of it has been delivered. ``on_onset`` is
        called with the monotonic time its first voiced sample was delivered."""
        voiced = np.flatnonzero(np.abs(clip) > ONSET_LEVEL)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Utterance(clip, done, int(voiced[0]) if voiced.size else 0, on_onset))
        return done

    def _take(self, n: int) -> npt.NDArray[np.float32]:
        out = np.zeros(n, np.float32)
        filled = 0
        while filled < n and self._queue:
            u = self._queue[0]
            take = min(n - filled, u.samples.size - u.offset)
            out[filled : filled + take] = u.samples[u.offset : u.offset + take]
            if u.on_onset is not None and u.offset <= u.onset < u.offset + take:
                u.on_onset(time.monotonic())
            u.offset += take
            filled += take
            if u.offset >= u.samples.size:
                self._queue.popleft()
                if not u.done.done():
                    u.done.set_result(None)
        return out

    async def run(self) -> None:
        """Deliver audio until cancelled."""
        due = time.monotonic()
        while True:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            chunks = 1 + int((time.monotonic() - due) / CHUNK_S)
            if chunks > MAX_BURST:
                self.transport.meter.tally.mic_overruns += 1
                due += (chunks - MAX_BURST) * CHUNK_S
                chunks = MAX_BURST
            await self.transport.push_user_audio(self._take(chunks * CHUNK))
            due += chunks * CHUNK_S


async def _wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``condition`` every 50 ms for up to ``timeout_s``; whether it came true."""
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= end:
            return False
        await asyncio.sleep(0.05)
    return True


async def person(
    mic: Mic,
    questions: list[npt.NDArray[np.float32]],
    backchannel: npt.NDArray[np.float32],
    until: float,
    seed: int,
    mix: tuple[float, float, float] = MIX,
    think: tuple[float, float] = THINK_S,
) -> None:
    """Talk until ``until`` (monotonic): a question; once the answer is audible, either let it play, say
    a backchannel over it, or barge in with the next question, in the shares ``mix`` (the microphone
    sends silence between). After an answer (and the greeting) the person thinks for a time drawn
    uniformly from ``think`` (seconds) before the next question."""
    rng = np.random.default_rng(seed)
    transport = mic.transport
    session, meter = transport.session, transport.meter
    if session.persona.llm.greeting.strip():  # the greeting is heard out, however late it starts
        await _wait_for(lambda: session.state == "speaking", REPLY_END_S)
        await _wait_for(lambda: session.state == "listening", REPLY_END_S)
        await asyncio.sleep(rng.uniform(*think))
    turn = 0
    barging = False
    while time.monotonic() < until:
        clip = questions[turn % len(questions)]
        turn += 1
        meter.tally.questions += 1
        if barging:

            def onset(t: float) -> None:
                if session.state == "speaking":  # the answer is still playing as the barge-in begins
                    meter.barge_in_onset = t

            await mic.say(clip, onset)
        else:
            await mic.say(clip)
        barging = False
        if not await _wait_for(lambda: session.state == "speaking", REPLY_START_S):
            meter.tally.no_reply += 1
            await _wait_for(lambda: session.state == "listening", REPLY_END_S)
            continue
        kind = rng.choice(["listen", "backchannel", "barge-in"], p=mix)
        await asyncio.sleep(OVERLAP_AFTER_S)
        if kind != "listen" and session.state == "speaking" and meter.speaking_turn is not None:
            if kind == "barge-in":
                meter.overlap = ("barge-in", meter.speaking_turn)
                barging = True
                continue  # the next question interrupts
            meter.overlap = ("backchannel", meter.speaking_turn)
            await mic.say(backchannel)
        await _wait_for(lambda: session.state == "listening", REPLY_END_S)
        await asyncio.sleep(rng.uniform(*think))


# ---------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------


@dataclass
class _Mark:
    """The state of the run at the previous report."""

    at: float
    cpu_s: float
    server_cpu_s: float
    render_cpu_s: float  # the render processes (every child but the LLM servers), summed since the start
    tallies: list[Tally]
    v2v: int  # voice-to-voice figures already reported
    heard: int
    barge: int


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost",
    )]  # fmt: skip


def rss_parts() -> dict[str, float]:
    """This process's resident memory by kind (Linux): anonymous (the heaps: what a leak grows) and
    file-backed (mapped model files and libraries, paged in as code paths first touch them), MB."""
    parts: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                parts[f"rss_{key[3:].lower()}_mb"] = round(int(value.split()[0]) / 1024, 1)  # kB
    return parts


class MemoryTrace:
    """Where the memory went since :meth:`start`: tracemalloc's Python heap and glibc's malloc counts."""

    TOP = 8

    def __init__(self) -> None:
        self._baseline: tracemalloc.Snapshot | None = None
        self._mallinfo2: Any = None
        try:
            libc = ctypes.CDLL("libc.so.6")
            self._mallinfo2 = libc.mallinfo2
            self._mallinfo2.restype = _MallInfo2
        except (OSError, AttributeError):  # not glibc >= 2.33
            pass

    def start(self) -> None:
        tracemalloc.start(10)
        self._baseline = tracemalloc.take_snapshot()

    def report(self) -> dict[str, Any]:
        """Traced and malloc'd megabytes now, and the lines whose allocations grew most."""
        out: dict[str, Any] = {}
        if self._mallinfo2 is not None:
            info = self._mallinfo2()
            # in use: handed out by malloc (heap + mmapped); free: held in the heap but unused
            out["malloc_in_use_mb"] = round((info.uordblks + info.hblkhd) / 2**20, 1)
            out["malloc_free_held_mb"] = round(info.fordblks / 2**20, 1)
        if self._baseline is not None:
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            out["python_traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
            growth = snapshot.compare_to(self._baseline, "lineno")[: self.TOP]
            out["python_growth"] = [
                {
                    "where": str(stat.traceback[0]),
                    "kb": round(stat.size_diff / 1024),
                    "count": stat.count_diff,
                }
                for stat in growth
            ]
        return out


class Reporter:
    """Snapshots of the process and the sessions, each covering the interval since the last."""

    def __init__(
        self,
        meters: list[Meter],
        lag: LoopLag,
        fps: float,
        server_pids: Sequence[int],
        memory: MemoryTrace | None = None,
    ) -> None:
        self.meters, self.lag, self.fps, self.memory = meters, lag, fps, memory
        self.process = psutil.Process()
        self.servers = [psutil.Process(pid) for pid in server_pids]
        self._child_cpu: dict[int, float] = {}  # render process pid -> CPU seconds at the last look
        self._render_cpu_s = 0.0
        self.start = time.monotonic()
        self._mark = self._now_mark()
        self._first = self._mark

    def _cpu(self) -> tuple[float, float, float]:
        """CPU seconds of this process, of the LLM servers and of the render processes (children that
        come and go: each one's growth since it was last seen is added up)."""
        own = self.process.cpu_times()
        server = 0.0
        for process in self.servers:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                server += times.user + times.system
        servers = {p.pid for p in self.servers}
        for child in self.process.children(recursive=True):
            if child.pid in servers or child.ppid() in servers:
                continue
            with contextlib.suppress(psutil.Error):
                times = child.cpu_times()
                total = times.user + times.system
                self._render_cpu_s += total - self._child_cpu.get(child.pid, 0.0)
                self._child_cpu[child.pid] = total
        return own.user + own.system, server, self._render_cpu_s

    def _render_rss(self) -> int:
        """Bytes resident in the render processes."""
        rss = 0
        for pid in self._child_cpu:
            with contextlib.suppress(psutil.Error):
                rss += psutil.Process(pid).memory_info().rss
        return rss

    def _now_mark(self) -> _Mark:
        cpu, server, render = self._cpu()
        return _Mark(
            time.monotonic(),
            cpu,
            server,
            render,
            [replace(m.tally) for m in self.meters],
            sum(len(m.voice_to_voice_ms) for m in self.meters),
            sum(len(m.heard_voice_to_voice_ms) for m in self.meters),
            sum(len(m.barge_in_stop_ms) for m in self.meters),
        )

    def snapshot(self, whole_run: bool = False) -> dict[str, Any]:
        """The interval since the previous snapshot (or, ``whole_run``, since the start), and the
        process now."""
        since = self._first if whole_run else self._mark
        now = self._now_mark()
        seconds = max(1e-9, now.at - since.at)
        counts = Tally()
        for new, old in zip(now.tallies, since.tallies, strict=True):
            counts = counts.plus(new.minus(old))
        v2v = [v for m in self.meters for v in m.voice_to_voice_ms][since.v2v :]
        heard = [v for m in self.meters for v in m.heard_voice_to_voice_ms][since.heard :]
        barge = [v for m in self.meters for v in m.barge_in_stop_ms][since.barge :]
        report: dict[str, Any] = {
            "minute": round((now.at - self.start) / 60, 2),
            "interval_min": round(seconds / 60, 2),
            "rss_mb": round(self.process.memory_info().rss / 2**20, 1),
            **rss_parts(),
            "threads": threading.active_count(),
            "os_threads": self.process.num_threads(),
            "open_files": self.process.num_fds(),
            "asyncio_tasks": len(asyncio.all_tasks()),
            "cpu_cores": round((now.cpu_s - since.cpu_s) / seconds, 2),
            "llm_server_cpu_cores": round((now.server_cpu_s - since.server_cpu_s) / seconds, 2),
            "render_cpu_cores": round((now.render_cpu_s - since.render_cpu_s) / seconds, 2),
            "render_rss_mb": round(self._render_rss() / 2**20, 1),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "fps": round(counts.video_frames / seconds / len(self.meters), 2),
            "gaps_over_100ms": counts.gaps_over_100ms,
            "max_gap_ms": round(max(m.run_max_gap_ms if whole_run else m.max_gap_ms for m in self.meters), 1),
            "loop_lag_max_ms": round(self.lag.run_max_ms if whole_run else self.lag.max_ms, 1),
            "loop_lags_over_100ms": self.lag.run_over_100ms if whole_run else self.lag.over_100ms,
            "drift": [self._drift(m) for m in self.meters],
            "voice_to_voice_p50_ms": percentile(v2v, 50),
            "voice_to_voice_p95_ms": percentile(v2v, 95),
            "heard_voice_to_voice_p50_ms": percentile(heard, 50),
            "heard_voice_to_voice_p95_ms": percentile(heard, 95),
            "barge_in_stop_p50_ms": percentile(barge, 50),
            # silences inside replies (a later chunk not ready in time), since the start
            "speech_underruns_total": self._underruns(),
            "turns": {f.name: getattr(counts, f.name) for f in fields(Tally)
                      if f.name not in ("video_frames", "audio_samples", "gaps_over_100ms")},
        }  # fmt: skip
        if self.memory is not None:
            report["memory"] = self.memory.report()
        if not whole_run:
            self._mark = now
            self.lag.max_ms = 0.0
            self.lag.over_100ms = 0
            for m in self.meters:
                m.max_gap_ms = 0.0
        return report

    def _underruns(self) -> dict[str, float]:
        counts = [m.engine.underruns for m in self.meters if m.engine is not None]
        return {"count": sum(c for c, _ in counts), "seconds": round(sum(s for _, s in counts), 3)}

    def _drift(self, m: Meter) -> dict[str, float | None]:
        """Audio against video and the wall clock; time the Engine skipped after a stall (and the video
        frames it dropped there) is not drift, and is reported beside it."""
        if m.started is None:
            return {"audio_minus_video_ms": None, "audio_minus_wall_ms": None}
        audio_s = m.tally.audio_samples / AUDIO_RATE
        skipped = m.engine.skipped_s if m.engine is not None else 0.0
        dropped = m.engine.dropped_video if m.engine is not None else 0
        return {
            # Both streams' positions on the engine clock: sent plus skipped (audio) or dropped (video).
            "audio_minus_video_ms": round(
                1000 * (audio_s + skipped - (m.tally.video_frames + dropped) / self.fps), 1
            ),
            "audio_minus_wall_ms": round(1000 * (audio_s + skipped - (time.monotonic() - m.started)), 1),
            "skipped_s": round(skipped, 3),
            "dropped_video": dropped,
        }


# ---------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------


async def run_sessions(
    persona: Persona,
    n: int,
    minutes: float,
    report_every_min: float,
    label: str,
    events_path: Path | None = None,
    mix: tuple[float, float, float] = MIX,
    trace_memory: bool = False,
    think: tuple[float, float] = THINK_S,
) -> dict[str, Any]:
    """``n`` concurrent sessions sharing one set of models for ``minutes``; a report every
    ``report_every_min`` minutes (printed as a JSON line) and the summary of the whole run. ``mix`` and
    ``think``: see :func:`person`."""
    questions, backchannel = await asyncio.to_thread(user_clips, persona)
    models = SharedModels()
    meters = [Meter() for _ in range(n)]
    lag = LoopLag()
    reports: list[dict[str, Any]] = []
    events = events_path.open("w") if events_path is not None else None
    try:
        async with _stacks(persona, models, n) as stacks:
            transports = [
                MeasuringTransport(stack, meter, events, k)
                for k, (stack, meter) in enumerate(zip(stacks, meters, strict=True))
            ]
            for stack, meter in zip(stacks, meters, strict=True):
                meter.engine = stack.engine
            rss_models_mb = round(psutil.Process().memory_info().rss / 2**20, 1)
            server_pids = [server.pid for server in models.servers if server.pid is not None]
            memory = MemoryTrace() if trace_memory else None
            reporter = Reporter(meters, lag, float(persona.appearance.video.fps), server_pids, memory)
            mics = [Mic(t) for t in transports]
            background = [asyncio.create_task(watch_loop(lag))]
            for transport, mic in zip(transports, mics, strict=True):
                transport.start_output()
                background.append(asyncio.create_task(mic.run()))
                await transport.session.start()
            if memory is not None:
                memory.start()
            until = reporter.start + 60 * minutes
            people = [
                asyncio.create_task(person(mic, questions, backchannel, until, k, mix, think))
                for k, mic in enumerate(mics)
            ]
            next_report = reporter.start + 60 * report_every_min
            while time.monotonic() < until:
                left = min(1.0, until - time.monotonic(), next_report - time.monotonic())
                await asyncio.sleep(max(0.05, left))
                if time.monotonic() >= next_report:
                    reports.append(reporter.snapshot())
                    print(json.dumps({label: reports[-1]}), flush=True)
                    next_report += 60 * report_every_min
            for task in people:  # a person mid-question stops at the end of the run
                task.cancel()
            await asyncio.gather(*people, return_exceptions=True)
            final = reporter.snapshot(whole_run=True)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            for transport in transports:
                await transport.aclose()
    finally:
        await models.aclose()
        if events is not None:
            events.close()
    answers: Counter[str] = Counter()
    for m in meters:
        answers.update(m.answers)
    return {
        "sessions": n,
        "minutes": final["interval_min"],
        "fps_min": round(min(m.tally.video_frames for m in meters) / (60 * final["interval_min"]), 2),
        "cpu_cores_per_session": round(
            (final["cpu_cores"] + final["llm_server_cpu_cores"] + final["render_cpu_cores"]) / n, 3
        ),
        "rss_mb_after_models": rss_models_mb,
        "rss_mb_per_session": round((final["rss_mb"] + final["render_rss_mb"]) / n, 1),
        "final": final,
        "answers": dict(answers),
        "reports": reports,
        "errors": [e for m in meters for e in m.errors][:10],
    }


@contextlib.asynccontextmanager
async def _stacks(persona: Persona, models: SharedModels, n: int) -> AsyncIterator[list[AvatarStack]]:
    """``n`` avatar stacks on one set of shared models, opened and closed together."""
    async with contextlib.AsyncExitStack() as exits:
        yield [await exits.enter_async_context(open_stack(persona, seed=k, models=models)) for k in range(n)]


def main() -> None:
    prepare_process()  # as `dyad` does: the product's memory and threads, measured
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--report-every", type=float, default=5.0, help="minutes between reports")
    parser.add_argument("--sessions", type=int, default=1, help="concurrent sessions on shared models")
    parser.add_argument("--persona", default="library_receptionist")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    parser.add_argument("--events", type=Path, help="write every Session event here (JSON lines)")
    parser.add_argument("--label", default="soak", help="the key of each printed report")
    parser.add_argument(
        "--mix",
        default=",".join(map(str, MIX)),
        help="shares of listen,backchannel,barge-in once an answer is audible (e.g. 0.2,0.4,0.4 to see "
        "all three in a short run)",
    )
    parser.add_argument(
        "--think",
        default=",".join(map(str, THINK_S)),
        help="the least and the most seconds a person waits after an answer before the next question "
        "(drawn uniformly for each; equal values: always that long)",
    )
    parser.add_argument(
        "--trace-memory", action="store_true", help="report where memory grows (tracemalloc, mallinfo2)"
    )
    args = parser.parse_args()
    shares = [float(x) for x in args.mix.split(",")]
    if len(shares) != 3 or min(shares) < 0 or abs(sum(shares) - 1) > 1e-6:
        parser.error(
            f"--mix takes three shares that add up to 1 (listen,backchannel,barge-in), got {args.mix!r}"
        )
    mix = (shares[0], shares[1], shares[2])
    bounds = [float(x) for x in args.think.split(",")]
    if len(bounds) != 2 or not 0 <= bounds[0] <= bounds[1]:
        parser.error(f"--think takes two seconds, the least then the most (e.g. 0.5,3), got {args.think!r}")
    think = (bounds[0], bounds[1])
    persona = load_persona(args.persona)
    result = asyncio.run(
        run_sessions(
            persona,
            args.sessions,
            args.minutes,
            args.report_every,
            args.label,
            args.events,
            mix,
            args.trace_memory,
            think,
        )
    )
    first = result["reports"][0] if result["reports"] else None
    final = result["final"]
    result["rss_growth_after_first_report"] = (
        round(final["rss_mb"] / first["rss_mb"] - 1, 4) if first else None
    )
    result["machine"] = {"cpus": os.cpu_count(), "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX")}
    result["think_s"] = list(think)
    result["command"] = " ".join(["bench/soak.py", *sys.argv[1:]])
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
