"""The Session's turn-taking work on a simulated clock, for bench/turns.py.

A stream is fed in 32 ms windows through Silero VAD and the turn detector as a Session feeds them, and the
Session's recognition work is replayed on two simulated worker threads, each running one job at a time in
the order the Session hands them out: the recogniser (Whisper: every silence's speculation, and the
interim transcripts when the persona makes them, ``stt.partials``) and the words' check (SmolLM2: the
last reply read when the turn opens, each speculation's verdict, and the words read ahead). Every job runs
for real when its simulated worker starts it, and takes its measured wall time on the simulated clock, so
a job queued behind another waits for it, and the text model's cache holds what the replayed calls left in
it. Smart Turn runs on its own thread when the VAD confirms a pause (:mod:`agent.turn`), as in a Session.

What it mirrors of :class:`agent.session.Session` (read that first; the rules are restated, not imported,
because the Session's are woven into its event handling): a speculation starts on the first window the VAD
hears no voice in, on the turn's audio after its settled words; a user who speaks again drops it, and its
words are settled if its silence lasted ``SETTLE_AFTER_S`` (once recognised); a speculation recognised while
still the turn's own is judged; the words recognised in a silence the user spoke after, and an interim
transcript's, are read ahead by the text model (:meth:`agent.turn_text.TextTurnModel.read_ahead`). What it
leaves out: the two workers, Smart Turn and the rest of a live machine (renderer, LLM server) share two
cores, where here each job takes its idle wall time; and a live process has two Whisper workers
(``DYAD_STT_WORKERS``), which share those cores, where here one queues.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.persona import TurnTakingConfig
from agent.session import PARTIAL_EVERY_S, PREROLL_S, SPECULATE_AFTER_S, join_words, settles
from agent.stt import UnclearSpeech, WhisperSTT
from agent.turn import SAMPLE_RATE, SmartTurnModel, TurnDetector
from agent.turn_text import TextTurnModel
from agent.vad import WINDOW, StreamingVAD

F32 = npt.NDArray[np.float32]
WINDOW_S = WINDOW / SAMPLE_RATE


@dataclass
class Job:
    """Work for a worker: ``run`` (real, timed) when it starts, ``done`` with its result at its end."""

    run: Callable[[], object]
    done: Callable[[float, object], None]
    cancelled: bool = False
    submitted: float = 0.0
    started: float | None = None
    ended: float | None = None


class Clock:
    """Simulated time: callbacks at given times, run in order."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[float], None]]] = []
        self._order = itertools.count()

    def at(self, t: float, callback: Callable[[float], None]) -> None:
        heapq.heappush(self._heap, (t, next(self._order), callback))

    def run_until(self, t: float) -> None:
        """Run every callback due up to ``t`` (those they add included)."""
        while self._heap and self._heap[0][0] <= t:
            when, _, callback = heapq.heappop(self._heap)
            callback(when)

    def run_all(self) -> None:
        self.run_until(float("inf"))


class Worker:
    """One worker thread: jobs run one at a time, in the order given; a job cancelled before it starts
    never runs (as a ``run_in_executor`` future cancelled while queued)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.queue: deque[Job] = deque()
        self.busy = False
        self.jobs = 0
        self.busy_s = 0.0

    def submit(self, now: float, job: Job) -> Job:
        job.submitted = now
        self.queue.append(job)
        if not self.busy:
            self._next(now)
        return job

    def _next(self, now: float) -> None:
        while self.queue and self.queue[0].cancelled:
            self.queue.popleft()
        if not self.queue:
            self.busy = False
            return
        job = self.queue.popleft()
        job.started = now
        self.busy = True
        start = time.perf_counter()
        result = job.run()
        took = time.perf_counter() - start
        self.jobs += 1
        self.busy_s += took

        def finish(t: float) -> None:
            job.ended = t
            job.done(t, result)
            self._next(t)

        self.clock.at(now + took, finish)


@dataclass
class Speculation:
    """The words of one silence (as agent.session._Speculation): recognised, then judged if still current."""

    last_voice: float
    base: int  # turn samples already settled when it started
    base_text: str
    samples: int  # turn samples it covers
    silent_until: float
    job: Job | None = None  # its recognition
    judging: Job | None = None  # its words' check
    tail: str | None = None
    unclear: bool = False
    last_word_probability: float = 1.0
    text: str | None = None
    probability: float | None = None
    judged_at: float | None = None  # when the verdict came (None: never)

    @property
    def settles(self) -> bool:
        return settles(self.last_voice, self.silent_until)


@dataclass
class ReplayedPause:
    """A silence the VAD confirmed, Smart Turn's answer on it, and its speculation's verdict."""

    end_t: float
    heard_t: float
    probability: float
    inference_s: float
    speculation: Speculation | None
    resume_t: float = float("inf")


@dataclass
class _Turn:
    """The Session's state of the user's turn that the replay needs."""

    opened_at: int  # the turn's first sample in the stream (its preroll included)
    last_voice: float
    last_partial: float
    committed: str = ""
    committed_samples: int = 0
    speculation: Speculation | None = None
    partial: Job | None = None


def _ignore(t: float, result: object) -> None:
    pass


@dataclass
class Replay:
    """Streams replayed through the VAD, Smart Turn and the Session's recognition work; the workers and
    their counts are kept across streams, the text model's cache is not."""

    config: TurnTakingConfig
    model: SmartTurnModel
    stt: WhisperSTT
    text: TextTurnModel | None
    last_reply: str
    partials: bool = False
    barge_in_s: float = 0.0

    def __post_init__(self) -> None:
        self.clock = Clock()  # empty again after each stream, whose times start at 0
        self.recogniser = Worker(self.clock)
        self.judge = Worker(self.clock)
        self._loop = asyncio.new_event_loop()

    def close(self) -> None:
        self._loop.close()

    def run(self, audio: F32) -> list[ReplayedPause]:
        """Feed ``audio`` (S,) 16 kHz; the pauses the VAD confirmed, with their verdicts (all work done)."""
        config = self.config
        vad = StreamingVAD(config.vad_threshold, config.min_speech_ms, config.min_wait_ms)
        detector = TurnDetector(config, self.model)
        pauses: list[ReplayedPause] = []
        turn: _Turn | None = None
        if self.text is not None:
            self.text.reset()  # a session's model has read other turns, not this stream's words
        for start in range(0, audio.size - WINDOW + 1, WINDOW):
            t = start / SAMPLE_RATE
            now = t + WINDOW_S
            self.clock.run_until(now)
            window = audio[start : start + WINDOW]  # (512,)
            detector.push(window, t)
            events = vad.push(window, t)
            if vad.probability >= vad.threshold:
                for pause in pauses:
                    pause.resume_t = min(pause.resume_t, t)
            for event in events:
                if event.kind == "speech_start":
                    detector.speech_started(event.t)
                    if turn is None:  # the Session opens the turn, keeping its preroll
                        opened_at = max(0, round((now - PREROLL_S - self.barge_in_s) * SAMPLE_RATE))
                        turn = _Turn(opened_at, last_voice=now, last_partial=event.t)
                        self._text_job(now, lambda text: text.prime(self.last_reply))
                elif turn is not None:
                    decision = detector.decide_sync()
                    assert decision.probability is not None
                    pauses.append(
                        ReplayedPause(
                            event.t, now, decision.probability, decision.inference_s, turn.speculation
                        )
                    )
            if turn is not None:
                self._speculate(turn, audio[turn.opened_at : start + WINDOW], vad.run_s > 0, now)
                if self.partials:
                    self._maybe_partial(turn, audio[turn.opened_at : start + WINDOW], now)
        self.clock.run_all()
        return pauses

    def _speculate(self, turn: _Turn, heard: F32, voiced: bool, now: float) -> None:
        """agent.session.Session._maybe_speculate: ``heard`` (S,) is the turn's audio up to ``now``."""
        spec = turn.speculation
        if voiced:  # the user goes on: this silence's speculation is dropped, its words maybe settled
            turn.last_voice = now
            if spec is not None:
                turn.speculation = None
                if not spec.settles and spec.job is not None:
                    spec.job.cancelled = True
                self._commit(turn, spec, now)
            return
        if spec is not None:
            spec.silent_until = now
            return
        if now - turn.last_voice < SPECULATE_AFTER_S:
            return
        spec = turn.speculation = Speculation(
            turn.last_voice, turn.committed_samples, turn.committed, heard.size, silent_until=now
        )
        spec.job = self.recogniser.submit(
            now, Job(self._recognise(heard[turn.committed_samples :]), self._recognised(turn, spec))
        )

    def _recognised(self, turn: _Turn, spec: Speculation) -> Callable[[float, object], None]:
        """agent.session.Session._speculate after recognition: judge the words if still current."""

        def done(t: float, result: object) -> None:
            spec.tail, spec.unclear, spec.last_word_probability = result  # type: ignore[misc]
            if turn.speculation is not spec:  # the user went on meanwhile: keep only the words
                self._commit(turn, spec, t)
                return
            spec.text = words = join_words(spec.base_text, spec.tail or "")

            def judged(t: float, probability: object) -> None:
                spec.probability, spec.judged_at = float(probability), t  # type: ignore[arg-type]

            doubt = spec.last_word_probability  # Whisper's, of the last word (agent.stt.Transcript)
            spec.judging = self._text_job(
                t, lambda text: text.probability(words, self.last_reply, last_word_probability=doubt), judged
            )

        return done

    def _commit(self, turn: _Turn, spec: Speculation, now: float) -> None:
        """agent.session.Session._commit: the words settled and read ahead."""
        if spec.tail is None or spec.unclear:
            return
        words = join_words(spec.base_text, spec.tail)
        if spec.settles and turn.committed_samples == spec.base:
            turn.committed, turn.committed_samples = words, spec.samples
        cut = not spec.settles
        self._text_job(now, lambda text: text.read_ahead(words, self.last_reply, partial=cut))

    def _maybe_partial(self, turn: _Turn, heard: F32, now: float) -> None:
        """agent.session.Session._maybe_partial: an interim transcript while the user speaks, read ahead."""
        if (
            turn.speculation is not None
            or turn.partial is not None
            or now - turn.last_partial < PARTIAL_EVERY_S
        ):
            return
        turn.last_partial = now
        base = turn.committed

        def done(t: float, result: object) -> None:
            turn.partial = None
            spec = turn.speculation
            if spec is not None and spec.text is not None:  # the pause's newer words are read already
                return
            words = join_words(base, result[0])  # type: ignore[index]
            self._text_job(t, lambda text: text.read_ahead(words, self.last_reply, partial=True))

        turn.partial = self.recogniser.submit(
            now, Job(self._recognise(heard[turn.committed_samples :]), done)
        )

    def _recognise(self, audio: F32) -> Callable[[], object]:
        def run() -> tuple[str, bool, float]:
            try:
                heard = self._loop.run_until_complete(self.stt.transcript(audio))
                return heard.text.strip(), False, heard.last_word_probability
            except UnclearSpeech:
                return "", True, 1.0

        return run

    def _text_job(
        self,
        now: float,
        work: Callable[[TextTurnModel], object],
        done: Callable[[float, object], None] = _ignore,
    ) -> Job | None:
        """``work`` on the text model's worker (nothing without the words' check)."""
        text = self.text
        return None if text is None else self.judge.submit(now, Job(lambda: work(text), done))
