"""The conversation: turn-taking, barge-in, STT, the LLM and the Engine, transport-independent.

A transport pushes the user's audio (16 kHz mono float32, any chunk size, timestamped on the engine
clock) and video frames, and consumes the Engine's frames and the Session's events. Who holds the floor
is a :class:`~agent.states.Phase` (``idle`` -> ``listening`` -> ``user_speaking`` -> ``thinking`` (end
of turn until the reply is audible) -> ``speaking`` -> ``listening``), moved only through the table in
``agent/states.py``; transports see it as ``idle | listening | thinking | speaking``.

Barge-in: when the user starts talking over the avatar, playback pauses after ``PAUSE_AFTER_S`` of
speech (so the avatar goes quiet within about 150 ms); if the speech reaches
``turn_taking.barge_in_min_speech_ms`` the reply is interrupted and only the words already played stay
in the history; if it stops sooner it was a backchannel ("mm-hm") and playback resumes.

The clock is injected (:mod:`agent.clock`): on a virtual clock (offline files) ``push_audio`` waits for
the work a chunk starts (recognition, the start of the reply) so the output is deterministic; on a real
clock that work runs in the background.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from agent.clock import Moment, SessionClock, session_clock
from agent.events import (
    ActionRequested,
    AgentState,
    AgentTranscript,
    ErrorEvent,
    ErrorSource,
    HandoffRequested,
    SessionEvent,
    StateChanged,
    TurnMetrics,
    UserTranscript,
)
from agent.knowledge import ActionAnswer, Answer, Answerer, HandoffAnswer, LLMAnswer
from agent.llm import ChatHistory, ChatModel, LLMError
from agent.persona import Persona
from agent.states import OVERLAP_MOVES, PHASE_MOVES, PUBLIC, Overlap, Phase, StateMachine
from agent.stt import STT, STTError, UnclearSpeech, transcript_of
from agent.turn import SmartTurnModel, TurnDecision, TurnDetector, pause_ends_turn
from agent.turn_text import TextTurnModel, TextVerdict
from agent.vad import StreamingVAD, VADEvent
from avatar_core.bundled import MissingModelError
from avatar_core.engine import Engine, SpeechHandle
from avatar_core.listening_features import HEARD_PAUSE_MS, ListeningFeatures
from avatar_core.workers import realtime_pool

log = logging.getLogger(__name__)
M = TypeVar("M")

SAMPLE_RATE = 16_000
PAUSE_AFTER_S = 0.1  # user speech over the avatar that pauses its playback
RESUME_AFTER_S = 0.3  # silence after a short burst that resumes it
PREROLL_S = 0.3  # audio kept from before the VAD onset, so the first syllable reaches STT
PARTIAL_EVERY_S = 0.6  # interim transcripts while the user talks
# Silence after which recognition and the LLM start before the turn is over: at once, on the first audio
# frame the VAD hears no voice in. The words' verdict on a pause comes this much after its start plus
# recognition and the text model, and the turn waits for it. At once rather than 50 ms in costs few starts
# that the user's next word throws away: 100 complete utterances of bench/turns.py's speech (245 s) hold 71
# silent runs inside, 66 of them two VAD windows (64 ms) or longer.
SPECULATE_AFTER_S = 0.0
# The words recognised in a silence the user then spoke after are settled (not read again) only when it
# lasted this long: a shorter one may fall inside a word, and a word cut in two is misread on both sides.
SETTLE_AFTER_S = 0.05


def settles(last_voice: float, silent_until: float) -> bool:
    """Whether the words recognised in a silence from ``last_voice`` to ``silent_until`` are settled when
    the user goes on: it lasted ``SETTLE_AFTER_S``."""
    return silent_until - last_voice >= SETTLE_AFTER_S


class _ProcessModel(Generic[M]):
    """A model loaded once per process and shared by every session. Calling it loads it the first time
    (blocking: call it off the event loop); None, with one warning in the log, when it is not installed."""

    def __init__(self, load: Callable[[], M], without: str) -> None:
        self._load = load
        self._without = without  # what happens without it, for the warning
        self._lock = threading.Lock()
        self._model: list[M | None] = []  # [] until loaded; [None] when it is not installed

    def __call__(self) -> M | None:
        with self._lock:
            if not self._model:
                try:
                    self._model.append(self._load())
                except MissingModelError as exc:
                    log.warning("%s; %s", exc, self._without)
                    self._model.append(None)
            return self._model[0]


shared_turn_model = _ProcessModel(SmartTurnModel, "turns end on silence alone")
shared_text_turn_model = _ProcessModel(TextTurnModel, "pauses are not checked against the words")


class VoiceActivity(Protocol):
    """What the Session needs of a voice activity detector; :class:`agent.vad.StreamingVAD` is one."""

    speaking: bool  # inside confirmed speech
    run_s: float  # length of the current voiced run (0 in silence)

    def push(self, samples: npt.NDArray[np.float32], t: float) -> list[VADEvent]: ...


def answer_events(answer: Answer, t: float, turn: int) -> list[SessionEvent]:
    """What saying ``answer`` publishes: a kiosk action, or a request for a person (else nothing)."""
    if isinstance(answer, ActionAnswer):
        return [ActionRequested(t, turn, answer.name, dict(answer.args), answer.text)]
    if isinstance(answer, HandoffAnswer):
        return [HandoffRequested(t, turn, answer.reason)]
    return []


def _warms(turn: _Turn) -> bool:
    """Whether the conversation is warmed around ``turn``'s reply: not after an answer decided without the
    LLM (a kiosk's curated or quoted answers), whose next turn likely needs none either: the CPU is better
    left to the rest."""
    return turn.answer is None or isinstance(turn.answer, LLMAnswer)


def join_words(*parts: str) -> str:
    """Words recognised piece by piece, as one text."""
    return " ".join(part for part in parts if part)


async def _await_child(task: asyncio.Task[None]) -> None:
    """Wait for a child task that may be cancelled, without swallowing a cancellation aimed at us."""
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


@dataclass
class _Speculation:
    """Recognition (and the LLM's answer) started in the silence before the end of a turn; used if the
    user says nothing more, dropped if they do. This hides most of STT and LLM latency behind the
    end-of-turn silence."""

    last_voice: float  # the turn's last voiced time when it started
    base: int = 0  # turn audio samples already committed when it started (not read again)
    base_text: str = ""  # their words
    samples: int = 0  # turn audio samples it covers, committed ones included
    tail: str | None = None  # the words recognised after ``base``
    last_word_probability: float = 1.0  # Whisper's, of the tail's last word (agent.stt.Transcript)
    task: asyncio.Task[None] | None = None  # recognition, then the answer's start
    judging: asyncio.Task[None] | None = None  # then the words' check (a reply never waits for it)
    text: str | None = None
    answer: Answer | None = None
    stt_ms: float | None = None
    transcript_wall: float | None = None
    llm: asyncio.Task[None] | None = None
    tokens: asyncio.Queue[str | Answer | LLMError | None] = field(default_factory=asyncio.Queue)
    # The reply made from ``tokens``, held: its first chunk is synthesized in the pause and played the
    # moment the turn ends (Engine.say(held=True)); dropped with the LLM's answer.
    speech: SpeechHandle | None = None
    # Set when the turn ends on this speculation: from then on the answer's function calls and errors
    # are published (never for a pause the user speaks on after).
    answering: asyncio.Event = field(default_factory=asyncio.Event)
    llm_ttft_ms: float | None = None
    first_token_wall: float | None = None
    first_token_at: float | None = None
    verdict: TextVerdict | None = None  # do the words end a sentence (with the text check on)
    unclear: bool = False  # speech whose words could not be made out (UnclearSpeech)
    silent_until: float = 0.0  # the last silent time seen while it was the turn's speculation

    @property
    def settles(self) -> bool:
        """Whether its words are kept when the user goes on (:func:`settles`)."""
        return settles(self.last_voice, self.silent_until)

    def drop_answer(self) -> None:
        """Drop the answer begun in the pause (the LLM's request and the speech made from it)."""
        if self.llm is not None:
            self.llm.cancel()
        if self.speech is not None:
            self.speech.interrupt()

    def cancel(self) -> None:
        for task in (self.task, self.judging):
            if task is not None:
                task.cancel()
        self.drop_answer()


@dataclass
class _Pause:
    """A silence in the user's turn, confirmed by the VAD; the turn detector says how long it must last
    to end the turn (``decision`` stays None while the model thinks)."""

    since: float  # the end of the speech before it
    decision: TurnDecision | None = None


@dataclass
class _Turn:
    """One user turn and the avatar's reply to it."""

    number: int
    start: float
    end: float = 0.0
    end_detected: float = 0.0
    eot_wall: float = 0.0  # time.perf_counter() at the end of the turn
    last_voice: float = 0.0
    audio: list[npt.NDArray[np.float32]] = field(default_factory=list)
    text: str = ""
    stt_ms: float | None = None
    llm_ttft_ms: float | None = None
    first_token_at: float | None = None
    first_token_wall: float | None = None
    transcript_at: float | None = None
    transcript_wall: float | None = None
    speculation: _Speculation | None = None
    pause: _Pause | None = None  # the silence the turn may end in
    committed: str = ""  # words recognised in the turn's earlier pauses, settled
    committed_samples: int = 0  # the audio they cover (only what follows is recognised again)
    answer: Answer | None = None  # how the reply is decided (agent.knowledge)
    unclear: bool = False  # the user spoke, but their words could not be made out


class Session:
    """One conversation between a user and the avatar.

    ``clock``: the session's time and what it means for background work (:mod:`agent.clock`); by
    default the one matching ``engine.clock``. ``turn_detector``: what ends a turn; by default the
    persona's (``turn_taking.turn_detector``), with Smart Turn loaded once per process
    (:func:`shared_turn_model`); ``text_turn``: the words' check of a pause
    (``turn_taking.text_veto_below``), by default SmolLM2 loaded once per process. ``answerer``: the
    persona's knowledge and tools, which decide each reply before (or instead of) the LLM; built from
    ``persona`` when not given (sessions of one persona may share one).
    """

    def __init__(
        self,
        persona: Persona,
        engine: Engine,
        stt: STT,
        llm: ChatModel,
        *,
        vad: VoiceActivity | None = None,
        features: ListeningFeatures | None = None,
        clock: SessionClock | None = None,
        turn_detector: TurnDetector | None = None,
        text_turn: TextTurnModel | None = None,
        answerer: Answerer | None = None,
    ) -> None:
        self.persona = persona
        self.answerer = answerer if answerer is not None else Answerer(persona)
        self.engine = engine
        self.stt = stt
        self.llm = llm
        turn_taking = persona.turn_taking
        # End of turn: the VAD confirms a silence after min_wait_ms (end_of_turn_silence_ms with
        # ``turn_detector: silence``); the detector, off the loop, says how long the silence must last,
        # the words may overrule it (agent.turn.pause_ends_turn); the turn ends then unless the user
        # speaks again.
        semantic = turn_taking.turn_detector == "smart_turn"
        confirm_ms = min(turn_taking.min_wait_ms, turn_taking.end_of_turn_silence_ms)
        self.vad: VoiceActivity = vad or StreamingVAD(
            turn_taking.vad_threshold,
            turn_taking.min_speech_ms,
            confirm_ms if semantic else turn_taking.end_of_turn_silence_ms,
        )
        # None until loaded (off the loop, on the first input) when the persona asks for Smart Turn.
        self.turn_detector: TurnDetector | None = (
            turn_detector if turn_detector is not None or semantic else TurnDetector(turn_taking)
        )
        # The words' veto: None until loaded (with the turn detector) when the persona asks for it.
        self.text_turn = text_turn
        self._text_loaded = text_turn is not None or turn_taking.text_veto_below == 0
        self.features = features or ListeningFeatures()
        self.history = ChatHistory(persona.llm.system_prompt, persona.llm.history_turns)
        self.clock = clock if clock is not None else session_clock(engine.clock)
        self.barge_in_s = turn_taking.barge_in_min_speech_ms / 1000.0
        self.state: AgentState = "idle"  # what transports show: PUBLIC[self.phase]
        self._phase = StateMachine("session", Phase.IDLE, PHASE_MOVES, self._phase_moved)
        self._moved_at: float | None = None  # when the move in progress happened, if not now
        self._overlap = StateMachine("barge-in", Overlap.NONE, OVERLAP_MOVES)
        self.muted = False  # the microphone is muted: user audio is heard (and recorded) as silence
        # Whether this avatar answers the user's words (None: always). Asked on the whole turn's words, never
        # on a part of them: in a room with two avatars (integrations/livekit/dialogue.py) a name said at
        # either end of the turn decides whose it is. Words it does not answer are let go like silence.
        self.answers_to: Callable[[str], bool] | None = None
        self._audio_pool = realtime_pool("dyad-vad")
        self._video_pool = realtime_pool("dyad-video")
        self._video_busy = False
        self._voice_until = -1.0  # end of the last audio chunk in which the VAD heard voice
        self._listeners: list[Callable[[SessionEvent], None]] = []
        self._queues: list[asyncio.Queue[SessionEvent | None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._preroll: deque[npt.NDArray[np.float32]] = deque()
        self._turn_count = 0
        self._turn: _Turn | None = None  # the user turn being spoken
        self._reply: SpeechHandle | None = None
        self._reply_turn = 0
        self._reply_task: asyncio.Task[None] | None = None
        self._answering: _Turn | None = None  # the turn whose answer is being prepared
        self._reply_queued = asyncio.Event()
        self._spoken_shown = ""
        self._silence_since: float | None = None
        self._last_partial = 0.0
        self._partial_task: asyncio.Task[None] | None = None
        self._prompt_ahead_task: asyncio.Task[None] | None = None
        self._closed = False

    # -- events -------------------------------------------------------------------------------------

    def on(self, listener: Callable[[SessionEvent], None]) -> None:
        """Call ``listener`` with every event (synchronously, on the event loop)."""
        self._listeners.append(listener)

    async def events(self) -> AsyncIterator[SessionEvent]:
        """Every event from now until the session closes."""
        queue: asyncio.Queue[SessionEvent | None] = asyncio.Queue()
        self._queues.append(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._queues.remove(queue)

    def _emit(self, event: SessionEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("an event listener failed")
        for queue in self._queues:
            queue.put_nowait(event)

    def _now(self) -> float:
        return self.clock.now()

    # -- states -------------------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        """Who holds the floor."""
        return self._phase.state

    @property
    def overlap(self) -> Overlap:
        """The user's voice over the avatar's reply (barge-in or backchannel)."""
        return self._overlap.state

    def _phase_moved(self, previous: Phase, phase: Phase) -> None:
        state = PUBLIC[phase]
        if state != self.state:
            shown, self.state = self.state, state
            at = self._moved_at if self._moved_at is not None else self._now()
            self._emit(StateChanged(at, state, shown))

    def _move(self, phase: Phase, at: float | None = None) -> None:
        """Move the floor (``at``: when it happened, if not now); late work finishing after the session
        closed moves nothing."""
        if self._closed and self._phase.state is Phase.IDLE:
            return
        self._moved_at = at
        try:
            self._phase.move(phase)
        finally:
            self._moved_at = None

    def _wake(self) -> None:
        """Input before ``start``: the session is listening from now on."""
        if self._phase.state is Phase.IDLE and not self._closed:
            self._phase.move(Phase.LISTENING)

    def _floor_free(self) -> None:
        """The avatar has nothing audible: the user's turn, if one is open, or listening."""
        self._move(Phase.USER_SPEAKING if self._turn is not None else Phase.LISTENING)

    def _error(self, source: ErrorSource, message: str, **details: object) -> None:
        log.warning("%s error: %s", source, message)
        self._emit(ErrorEvent(self._now(), source, message, True, dict(details)))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin listening, and greet with the persona's greeting (if any)."""
        await self._load_turn_detector()
        self._wake()
        if self.text_turn is not None:  # its system prompt read now, not in the first pause
            self._spawn(self._prime_words(self.text_turn))
        if self.persona.llm.greeting.strip():
            await self.say(self.persona.llm.greeting)  # warmed once it is recorded
        else:  # the system prompt evaluated before the first question, not after it
            self._warm(self.history.messages())

    async def _load_turn_detector(self) -> TurnDetector:
        """The turn detector (and the words' check), their models loaded off the event loop the first
        time."""
        loop = asyncio.get_running_loop()
        if not self._text_loaded:
            text_turn = await loop.run_in_executor(None, shared_text_turn_model)
            if not self._text_loaded:
                self.text_turn, self._text_loaded = text_turn, True
        if self.turn_detector is None:
            model = await loop.run_in_executor(None, shared_turn_model)
            if self.turn_detector is None:
                self.turn_detector = TurnDetector(self.persona.turn_taking, model)
        return self.turn_detector

    async def say(self, text: str) -> SpeechHandle:
        """Speak ``text`` now as the avatar's own turn (the greeting, a kiosk announcement)."""
        if self._closed:
            raise RuntimeError("Session.say after aclose(): the session is closed; open a new one")
        self._wake()
        self._cancel_reply()
        self._turn_count += 1
        self._reply_queued.clear()
        self._reply_task = self._spawn(self._speak(self._turn_count, None, text))
        await self._reply_queued.wait()
        assert self._reply is not None
        return self._reply

    async def submit_text(self, text: str) -> None:
        """A typed question: answered exactly like a spoken turn whose transcript is ``text`` (not at all
        when ``answers_to`` says it is not this avatar's)."""
        text = text.strip()
        if not text or self._closed or not self._mine(text):
            return
        self._wake()
        self._cancel_reply()
        self._reply = None  # the interrupted reply must not set "listening" as it winds down
        if self._turn is not None:  # the user was speaking too: the typed question wins
            if self._turn.speculation is not None:
                self._turn.speculation.cancel()
            self._turn = None
            if self.turn_detector is not None:
                self.turn_detector.reset()
        await self._cancel_partial()
        self._turn_count += 1
        now, wall = self._now(), time.perf_counter()
        turn = _Turn(
            self._turn_count, now, end=now, end_detected=now, eot_wall=wall, last_voice=now, text=text
        )
        turn.stt_ms, turn.transcript_at, turn.transcript_wall = 0.0, now, wall
        self._emit(UserTranscript(now, turn.number, text, True, now, now))
        turn.answer = self.decide(text)
        self.history.add_user(text)
        self._move(Phase.THINKING)
        self.engine.acknowledge()
        self._reply_queued.clear()
        self._reply_task = self._spawn(self._speak(turn.number, turn, None))
        await self._reply_queued.wait()

    async def aclose(self) -> None:
        """End the session: stop speech and background work."""
        self._closed = True
        self._cancel_reply()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._audio_pool.shutdown(wait=False, cancel_futures=True)
        self._video_pool.shutdown(wait=False, cancel_futures=True)
        if self.turn_detector is not None:
            self.turn_detector.close()
        self._phase.move(Phase.IDLE)
        for queue in self._queues:
            queue.put_nowait(None)

    # -- input --------------------------------------------------------------------------------------

    async def push_audio(self, samples: npt.NDArray[np.float32], t: float) -> None:
        """User audio, 16 kHz mono float32, whose first sample is at engine time ``t`` (ignored once the
        session is closed)."""
        if self._closed:
            return
        if self.muted:
            samples = np.zeros_like(samples)  # a turn in progress ends as if the user had stopped
        detector = await self._load_turn_detector()
        loop = asyncio.get_running_loop()
        events = await loop.run_in_executor(self._audio_pool, self._analyse, samples, t)
        end = t + samples.size / SAMPLE_RATE
        self._buffer(samples)
        detector.push(samples, t)
        self._barge_in(end)
        for event in events:
            if event.kind == "speech_start":
                self._speech_started(event)
            else:
                await self._pause_heard(event)
        if self._turn is not None:
            await self._maybe_speculate(self._turn, end)
        if self._turn is not None:
            await self._maybe_end_turn(self._turn, end)
        if self._turn is not None and self.persona.stt.interim:
            await self._maybe_partial(end)
        self._sync_agent_transcript()

    async def push_video(self, image: npt.NDArray[np.uint8], t: float) -> None:
        """A user video frame (RGB) at engine time ``t``; frames arriving while one is analysed (from a
        caller that does not wait, i.e. a real-time transport) are dropped."""
        if self._video_busy or self._closed:
            return
        self._video_busy = True
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._video_pool, self.features.push_video, image, t
            )
        except Exception as exc:
            self._error("video", f"face analysis failed: {exc}")
        finally:
            self._video_busy = False

    def _analyse(self, samples: npt.NDArray[np.float32], t: float) -> list[VADEvent]:
        events = self.vad.push(samples, t)
        end = t + samples.size / SAMPLE_RATE
        if self.vad.run_s > 0:
            self._voice_until = end
        # The listener hears the user's pauses (not the turn-taking VAD's longer silence), as a person would.
        self.features.push_audio(samples, t, end - self._voice_until < HEARD_PAUSE_MS / 1000)
        self.engine.observe_user(self.features.frame(t + samples.size / SAMPLE_RATE))
        return events

    def _buffer(self, samples: npt.NDArray[np.float32]) -> None:
        if self._turn is not None:
            self._turn.audio.append(samples)
            return
        self._preroll.append(samples)
        # Speech over the avatar becomes a turn only once it interrupts, so keep enough to cover it.
        keep = (PREROLL_S + self.barge_in_s) * SAMPLE_RATE
        while sum(s.size for s in self._preroll) > keep and len(self._preroll) > 1:
            self._preroll.popleft()

    # -- turn-taking --------------------------------------------------------------------------------

    def _avatar_talking(self) -> bool:
        return self._reply is not None and not self._reply.done

    def _barge_in(self, now: float) -> None:
        """The overlap machine: user voice over a reply is heard, pauses playback, then interrupts the
        reply (a barge-in) or, if silence follows first, resumes it (a backchannel)."""
        if not self._avatar_talking():
            self._release_playback()
            if self._overlap.state is not Overlap.NONE and self._turn is None and self.vad.speaking:
                self._open_turn(now - self.vad.run_s)  # the avatar finished; the user is still talking
            self._overlap.move(Overlap.NONE)
            return
        run = self.vad.run_s
        if run > 0:
            self._silence_since = None
            if self._overlap.state is Overlap.NONE:
                self._overlap.move(Overlap.HEARD)
        if run >= PAUSE_AFTER_S and not self.engine.paused:
            self.engine.pause()
            self._overlap.move(Overlap.PAUSED)
        if run >= self.barge_in_s or (self.vad.speaking and self._speech_len(now) >= self.barge_in_s):
            log.info("barge-in: the user talks over the avatar")
            self._interrupt_reply()
            self._overlap.move(Overlap.NONE)
            return
        if self.engine.paused and run == 0:
            self._silence_since = self._silence_since if self._silence_since is not None else now
            if now - self._silence_since >= RESUME_AFTER_S:
                self.engine.resume()  # it was a backchannel
                self._overlap.move(Overlap.NONE)
                self._silence_since = None

    def _release_playback(self) -> None:
        """Resume playback held by a pause (the reply it held ended or was replaced)."""
        if self.engine.paused:
            self.engine.resume()
        if self._overlap.state is Overlap.PAUSED:
            self._overlap.move(Overlap.HEARD)  # the user's voice is still over the avatar

    def _speech_len(self, now: float) -> float:
        return now - self._turn.start if self._turn is not None else 0.0

    def _speech_started(self, event: VADEvent) -> None:
        if self._turn is not None:
            self._turn.pause = None  # the user goes on: the pause did not end the turn
            return
        if self._avatar_talking() and self._overlap.state is not Overlap.NONE:
            return  # a backchannel candidate: it becomes a turn only if it interrupts
        self._open_turn(event.t)

    async def _pause_heard(self, event: VADEvent) -> None:
        """The VAD confirmed a silence: ask the turn detector (off the loop) how long it must last."""
        turn = self._turn
        if turn is None:
            if self._overlap.state is Overlap.HEARD:
                self._overlap.move(Overlap.NONE)  # a backchannel while the avatar spoke
            return
        pause = turn.pause = _Pause(event.t)
        task = self._spawn(self._decide(pause))
        await self.clock.settle(lambda: _await_child(task))

    async def _decide(self, pause: _Pause) -> None:
        assert self.turn_detector is not None
        pause.decision = await self.turn_detector.decide()

    async def _maybe_end_turn(self, turn: _Turn, now: float) -> None:
        """End the turn once its pause has lasted as long as the audio and the words ask
        (:func:`agent.turn.pause_ends_turn`), unless the user is making a sound again."""
        pause = turn.pause
        if pause is None or self.vad.run_s > 0:
            return
        words, pending = self._words(turn)
        if pause_ends_turn(
            self.persona.turn_taking, now - pause.since, pause.decision, words, words_pending=pending
        ):
            await self._speech_ended(turn, now)

    def _words(self, turn: _Turn) -> tuple[tuple[str, float] | None, bool]:
        """The words' verdict on the current pause (the transcript so far and its probability of ending a
        sentence), and whether one is still being made: without the check, or once recognition or the
        check failed, (None, False)."""
        if self.text_turn is None:
            return None, False
        spec = turn.speculation
        if spec is None or spec.last_voice != turn.last_voice:
            return None, True  # the speculation for this pause starts SPECULATE_AFTER_S into it
        if spec.verdict is not None:
            assert spec.text is not None
            return (spec.text, spec.verdict.probability), False
        pending = [task for task in (spec.task, spec.judging) if task is not None and not task.done()]
        return None, bool(pending)

    async def _maybe_speculate(self, turn: _Turn, now: float) -> None:
        if self.vad.run_s > 0:
            turn.last_voice = now
            spec = turn.speculation
            if spec is not None:
                # The user goes on: the answer started in the pause is dropped, and the words before
                # a long enough pause are settled (committed once recognised; they are not read again).
                turn.speculation = None
                if not spec.settles:
                    spec.cancel()
                else:
                    spec.drop_answer()
                self._commit(turn, spec)
            return
        spec = turn.speculation
        if spec is not None:  # this silence's own (the user's voice clears it, above)
            spec.silent_until = now
            return
        if now - turn.last_voice < SPECULATE_AFTER_S:
            return
        audio = np.concatenate(turn.audio)
        base = turn.committed_samples
        turn.speculation = spec = _Speculation(
            turn.last_voice, base, turn.committed, audio.size, silent_until=now
        )
        spec.task = self._spawn(self._speculate(spec, turn, audio[base:]))
        await self.clock.settle(lambda: self._speculated(spec))

    @staticmethod
    async def _speculated(spec: _Speculation) -> None:
        """Until a speculation's recognition and its words' check are done (a virtual clock waits)."""
        assert spec.task is not None
        await _await_child(spec.task)
        if spec.judging is not None:
            await _await_child(spec.judging)

    async def _speculate(self, spec: _Speculation, turn: _Turn, audio: npt.NDArray[np.float32]) -> None:
        """Recognise ``audio`` (the turn after its committed words) and start the answer to the whole."""
        started = time.perf_counter()
        try:
            heard = await transcript_of(self.stt, audio)
            spec.tail, spec.last_word_probability = heard.text.strip(), heard.last_word_probability
        except UnclearSpeech:
            spec.tail, spec.unclear = "", True
        except STTError:
            return  # the turn's own recognition reports it
        if turn.speculation is not spec:  # the user went on meanwhile: keep only the words
            self._commit(turn, spec)
            return
        spec.transcript_wall = time.perf_counter()
        spec.stt_ms = 1000 * (spec.transcript_wall - started)
        spec.text = text = join_words(spec.base_text, spec.tail)
        if text and self._mine(text):
            if self.persona.stt.interim:  # in a silence the speculation's words are the interim transcript
                self._emit(UserTranscript(self._now(), turn.number, text, False, turn.start))
            spec.answer = self.decide(text)
            if isinstance(spec.answer, LLMAnswer):
                spec.llm = self._spawn(self._prefetch(spec, spec.answer))
                # Its first chunk is synthesized while the pause lasts, and plays when the turn ends
                # (docs/design.md, "The reply begun in the pause").
                spec.speech = self.engine.say(self._prefetched(turn.number, spec), held=True)
        if self.text_turn is not None:
            spec.judging = self._spawn(self._judge(spec, self.text_turn, text))

    async def _judge(self, spec: _Speculation, text_turn: TextTurnModel, text: str) -> None:
        """The words' verdict on a pause (only the end of the turn waits for it, never the reply)."""
        try:
            spec.verdict = await text_turn.judge(
                text, self._last_reply(), last_word_probability=spec.last_word_probability
            )
            log.debug("the words %r end a sentence with p=%.3f", text, spec.verdict.probability)
        except Exception:  # the check is an aid: without it the audio decides
            log.exception("the words' end-of-turn check failed; this pause ends on the audio alone")

    async def _prime_words(self, text_turn: TextTurnModel) -> None:
        try:
            await text_turn.prime_async(self._last_reply())
        except Exception:  # the verdict will read the context itself
            log.exception("the words' end-of-turn check could not read the last reply ahead")

    def _read_ahead(self, words: str, *, partial: bool = False) -> None:
        """Have the text model read the user's words so far while they speak, so that a pause's verdict
        reads only the words after them (docs/design.md, "End of turn")."""
        if self.text_turn is not None and words:
            self._spawn(self._read_words_ahead(self.text_turn, words, partial))

    async def _read_words_ahead(self, text_turn: TextTurnModel, words: str, partial: bool) -> None:
        try:
            await text_turn.read_ahead_async(words, self._last_reply(), partial=partial)
        except Exception:  # the verdict will read them itself
            log.exception("the words' end-of-turn check could not read the user's words ahead")

    def _mine(self, text: str) -> bool:
        """Whether this avatar answers ``text`` (see ``answers_to``)."""
        return self.answers_to is None or self.answers_to(text)

    def _last_reply(self) -> str:
        """What the avatar said last (the context the user's words answer)."""
        return next((m["content"] for m in reversed(self.history.messages()) if m["role"] == "assistant"), "")

    def _commit(self, turn: _Turn, spec: _Speculation) -> None:
        """The words a speculation recognised before a silence the user spoke on after: settled (not
        recognised again) and read ahead by the text model. Words it could not make out are neither;
        words read in a silence shorter than ``SETTLE_AFTER_S`` (which may have cut a word in two) are not
        settled, and are read ahead without their last word."""
        if spec.tail is None or spec.unclear:
            return
        words = join_words(spec.base_text, spec.tail)
        if spec.settles and turn.committed_samples == spec.base:
            turn.committed, turn.committed_samples = words, spec.samples
        self._read_ahead(words, partial=not spec.settles)

    async def _prefetch(self, spec: _Speculation, answer: LLMAnswer) -> None:
        started = time.perf_counter()
        try:
            async for delta in self.answerer.reply(self.llm, answer):
                if isinstance(delta, str) and spec.first_token_wall is None and delta.strip():
                    spec.first_token_wall = time.perf_counter()
                    spec.first_token_at = self._now()
                    spec.llm_ttft_ms = 1000 * (spec.first_token_wall - started)
                spec.tokens.put_nowait(delta)
        except LLMError as exc:
            spec.tokens.put_nowait(exc)
        finally:
            spec.tokens.put_nowait(None)

    def _open_turn(self, start: float) -> None:
        self._wake()
        pending = self._answering
        if pending is not None and pending.transcript_at is None and self._reply is None:
            # The user went on talking while their last words were being recognised: one turn, not two.
            self._cancel_reply()
            self._turn = _Turn(
                pending.number, pending.start, last_voice=self._now(), audio=[*pending.audio, *self._preroll]
            )
        else:
            self._turn_count += 1
            self._turn = _Turn(self._turn_count, start, last_voice=self._now(), audio=list(self._preroll))
        self._answering = None
        self._preroll.clear()
        self._last_partial = start
        if self.turn_detector is not None:
            self.turn_detector.reset()
            self.turn_detector.speech_started(self._turn.start)
        if self.text_turn is not None:  # read the avatar's last reply now, not in the user's pause
            self._spawn(self._prime_words(self.text_turn))
        self._move(Phase.USER_SPEAKING)

    async def _speech_ended(self, turn: _Turn, now: float) -> None:
        """The turn is over at ``now``: recognise it (or take the speculation's result) and answer."""
        assert turn.pause is not None
        self._turn = None
        if self.turn_detector is not None:
            self.turn_detector.reset()
        turn.end = turn.pause.since
        turn.end_detected = now
        turn.eot_wall = time.perf_counter()
        await self._cancel_partial()
        self._reply_queued.clear()
        self._answering = turn
        self._move(Phase.THINKING)
        self.engine.acknowledge()  # the face shows it heard, before the voice is ready
        self._reply_task = self._spawn(self._answer(turn))
        await self.clock.settle(self._reply_queued.wait)

    def _interrupt_reply(self) -> None:
        handle = self._reply
        self._cancel_reply()
        if handle is not None and self._turn is None:
            self._open_turn(self._now() - self.vad.run_s)

    def _cancel_reply(self) -> None:
        if self._answering is not None and self._answering.speculation is not None:
            self._answering.speculation.cancel()
        if self._reply_task is not None:
            self._reply_task.cancel()
        if self._reply is not None:
            self._reply.interrupt()
        self._release_playback()

    async def _maybe_partial(self, now: float) -> None:
        turn = self._turn
        if turn is None or now - self._last_partial < PARTIAL_EVERY_S:
            return
        if turn.speculation is not None:
            return  # a silence: its speculation is reading the same words (and shows them)
        if self._partial_task is not None and not self._partial_task.done():
            return
        self._last_partial = now
        audio = np.concatenate(turn.audio)[turn.committed_samples :]  # after the settled words
        task = self._partial_task = self._spawn(self._partial(turn, turn.committed, audio))
        await self.clock.settle(lambda: _await_child(task))

    async def _partial(self, turn: _Turn, committed: str, audio: npt.NDArray[np.float32]) -> None:
        try:
            text = join_words(committed, (await self.stt.transcribe(audio)).strip())
        except (STTError, UnclearSpeech):
            return  # the final transcript reports errors and asks again
        # A partial begun just before a pause can end after the pause's speculation has read the whole
        # turn: its older words are not shown after the newer ones, nor read ahead after the verdict.
        spec = turn.speculation
        newer = spec is not None and spec.text is not None
        if text and self._turn is turn and not newer and self._mine(text):
            self._emit(UserTranscript(self._now(), turn.number, text, False, turn.start))
            self._read_ahead(text, partial=True)
            self._prompt_ahead(turn, text)

    def _prompt_ahead(self, turn: _Turn, words: str) -> None:
        """Have the LLM server evaluate the prompt of the turn's request up to the user's words so far
        (``Answerer.prompt_ahead``) while they still speak, so that the request evaluates only the words
        after them and the end of the message (docs/design.md, "The Session"). One at a time, and not once a
        pause's speculation is under way: its own request is the one to serve."""
        running = self._prompt_ahead_task is not None and not self._prompt_ahead_task.done()
        if running or turn.speculation is not None:
            return
        messages = self.answerer.prompt_ahead(words, self.history.messages())
        if messages is not None:
            self._prompt_ahead_task = self._warm(messages)

    async def _cancel_partial(self) -> None:
        if self._partial_task is not None and not self._partial_task.done():
            self._partial_task.cancel()
            await _await_child(self._partial_task)

    # -- replies ------------------------------------------------------------------------------------

    async def _answer(self, turn: _Turn) -> None:
        spec = turn.speculation
        if spec is not None and spec.last_voice == turn.last_voice and spec.task is not None:
            await _await_child(spec.task)
        if spec is not None and spec.last_voice == turn.last_voice and spec.text is not None:
            turn.text, turn.stt_ms, turn.transcript_wall = spec.text, spec.stt_ms, spec.transcript_wall
            turn.answer, turn.unclear = spec.answer, spec.unclear
        else:
            if spec is not None:
                spec.cancel()
                turn.speculation = spec = None
            audio = np.concatenate(turn.audio) if turn.audio else np.zeros(0, np.float32)
            started = time.perf_counter()
            try:  # only the audio after the committed words is read again
                tail = (await self.stt.transcribe(audio[turn.committed_samples :])).strip()
            except UnclearSpeech as exc:
                log.info("could not make out the user's words (%s)", exc)
                tail, turn.unclear = "", True
            except STTError as exc:
                self._error("stt", str(exc), turn=turn.number)
                await self._speak(turn.number, turn, self.persona.llm.fallback_line)
                return
            turn.text = join_words(turn.committed, tail)
            turn.transcript_wall = time.perf_counter()
            turn.stt_ms = 1000 * (turn.transcript_wall - started)
        if not self._mine(turn.text):  # another avatar's turn: heard, let go (not asked about either)
            log.info("not this avatar's turn: %r", turn.text[:80])
            if spec is not None:
                spec.cancel()
            turn.text, turn.unclear, turn.answer = "", False, None
        turn.transcript_at = self._now()
        self._emit(UserTranscript(self._now(), turn.number, turn.text, True, turn.start, turn.end))
        if not turn.text:
            line = self.persona.stt.unclear_line
            if turn.unclear and line:  # someone spoke and would wait for an answer: ask again
                await self._speak(turn.number, turn, line)
                return
            self._reply_queued.set()
            self._floor_free()
            return
        if turn.answer is None:
            turn.answer = self.decide(turn.text)
        self.history.add_user(turn.text)
        await self._speak(turn.number, turn, None)

    def decide(self, text: str) -> Answer:
        """How to answer the user's ``text`` now (before it joins the history): a curated answer, a tool,
        an action, a hand-off, the unknown line, or the LLM with the persona's facts. Under a millisecond
        for a kiosk's knowledge (SQLite FTS5), so it runs on the loop."""
        answer = self.answerer.answer(text, self.history.messages())
        log.info("answer to %r: %s", text[:80], answer.metadata())
        return answer

    def _reply_source(self, turn: _Turn) -> str | AsyncIterator[str]:
        """What the avatar says to ``turn``: a decided answer's text at once (publishing its action or
        hand-off), or the LLM's reply as it streams."""
        answer = turn.answer
        if answer is None or isinstance(answer, LLMAnswer):
            return self._llm_text(turn)
        for event in answer_events(answer, self._now(), turn.number):
            self._emit(event)
        return answer.text

    async def _llm_text(self, turn: _Turn) -> AsyncIterator[str]:
        """The LLM's reply as it streams; the fallback line if it fails before saying anything."""
        started = time.perf_counter()
        said = False
        answer = turn.answer
        deltas: AsyncIterator[str | Answer]
        if isinstance(answer, LLMAnswer):
            deltas = self.answerer.reply(self.llm, answer)  # with tools and the grounding check
        else:
            deltas = self.llm.stream(self.history.messages())
        try:
            async for delta in deltas:
                if not isinstance(delta, str):  # a function the LLM called: publish its action
                    for event in answer_events(delta, self._now(), turn.number):
                        self._emit(event)
                    continue
                if not said and delta.strip():
                    said = True
                    turn.first_token_wall = time.perf_counter()
                    turn.llm_ttft_ms = 1000 * (turn.first_token_wall - started)
                    turn.first_token_at = self._now()
                yield delta
        except LLMError as exc:
            self._error("llm", str(exc), turn=turn.number)
            if not said:
                yield self.persona.llm.fallback_line

    async def _prefetched(self, number: int, spec: _Speculation) -> AsyncIterator[str]:
        """The speculatively started LLM answer, from its buffer: its words at once (they are synthesized
        while the turn may still go on), anything else once the turn has ended on it."""
        said = False
        while (item := await spec.tokens.get()) is not None:
            if not isinstance(item, str):
                await spec.answering.wait()
            if isinstance(item, LLMError):
                self._error("llm", str(item), turn=number)
                if not said:
                    yield self.persona.llm.fallback_line
                return
            if not isinstance(item, str):  # a function the LLM called: publish its action now
                for event in answer_events(item, self._now(), number):
                    self._emit(event)
                continue
            said = said or bool(item.strip())
            yield item

    async def _speak(self, number: int, turn: _Turn | None, text: str | None) -> None:
        """Say a fixed ``text``, or the answer to ``turn`` (the one begun in its pause, or a new one); then
        record what was heard."""
        spec = turn.speculation if turn is not None and text is None else None
        if spec is not None and spec.speech is not None:
            handle = spec.speech
            spec.answering.set()
            self.engine.release(handle)
        else:
            source = text if text is not None else self._reply_source(turn) if turn is not None else ""
            handle = self.engine.say(source)
        self._reply, self._reply_turn, self._spoken_shown = handle, number, ""
        self._reply_queued.set()
        try:
            waiters = {
                asyncio.ensure_future(handle.started.wait()),
                asyncio.ensure_future(handle.wait_for_playout()),
            }
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if handle.started.is_set():
                # Stamped when the first sample was handed out, not when this task woke up (a frame
                # later or not, depending on thread timing), so a run on a virtual clock is deterministic.
                self._move(Phase.SPEAKING, handle.heard_at)
                if turn is not None and _warms(turn) and (slid := self.history.slid_for_reply()) is not None:
                    # Recording this reply will slide the history window: evaluated after it, the slid
                    # window (about 250 tokens, 2-3 s on a busy 2-core machine) delayed the next question's
                    # first token when the user spoke soon (docs/design.md, "The Session").
                    self._warm(slid)
            await handle
        finally:
            spoken = handle.played_text()
            if spoken:
                generated = turn is not None and isinstance(turn.answer, LLMAnswer)
                self.history.add_assistant(spoken, generated=generated)
                if turn is None or _warms(turn):  # the greeting, or an answer the LLM may follow
                    self._warm(self.history.messages())
            self._emit(AgentTranscript(self._now(), number, spoken, True, handle.id, handle.interrupted))
            if handle.error is not None:
                self._error("tts", handle.error, turn=number)
            if turn is not None:
                if spec is not None and spec.speech is handle:  # the answer begun in the pause
                    turn.llm_ttft_ms, turn.first_token_wall = spec.llm_ttft_ms, spec.first_token_wall
                    turn.first_token_at = spec.first_token_at
                self._emit(self._metrics(turn, handle))
            if self._reply is handle:
                self._reply = None
                self._release_playback()
                self._floor_free()

    def _warm(self, messages: list[dict[str, str]]) -> asyncio.Task[None] | None:
        """Have the LLM server evaluate ``messages``, the start of the next request, while the user has not
        finished speaking: the request then evaluates only what follows (``ChatLLM.warm``, a no-op unless
        ``warm_prompts``). The warm-up's task, if one was started."""
        warm = getattr(self.llm, "warm", None)
        if warm is None or self._closed:
            return None
        return self._spawn(warm(messages))

    def _sync_agent_transcript(self) -> None:
        handle = self._reply
        if handle is None or handle.done:
            return
        spoken = handle.played_text()
        if spoken != self._spoken_shown:
            self._spoken_shown = spoken
            self._emit(AgentTranscript(self._now(), self._reply_turn, spoken, False, handle.id))

    def _metrics(self, turn: _Turn, handle: SpeechHandle) -> TurnMetrics:
        """Latency of each stage from the end of the user's speech, as the session clock counts it."""
        end_detected = Moment(turn.end_detected, turn.eot_wall)

        def latency(moment: Moment) -> float | None:
            ms = self.clock.latency_ms(moment, turn.end, end_detected)
            return None if ms is None else round(ms, 1)

        first_audio = Moment(handle.heard_at, handle.first_ready_wall)  # on the clock, as turn.end
        synthesis = handle.first_synthesis_s
        decided = turn.answer.metadata() if turn.answer is not None else {}
        return TurnMetrics(
            t=self._now(),
            turn=turn.number,
            end_of_turn=round(1000 * (turn.end_detected - turn.end), 1),
            transcript=latency(Moment(turn.transcript_at, turn.transcript_wall)),
            first_token=latency(Moment(turn.first_token_at, turn.first_token_wall)),
            first_audio=latency(first_audio) if handle.heard_at is not None else None,
            stt_ms=None if turn.stt_ms is None else round(turn.stt_ms, 1),
            llm_ttft_ms=None if turn.llm_ttft_ms is None else round(turn.llm_ttft_ms, 1),
            tts_first_chunk_ms=None if synthesis is None else round(1000 * synthesis, 1),
            interrupted=handle.interrupted,
            answer=decided.get("answer"),
            answer_source=decided.get("source"),
            answer_score=decided.get("score"),
            retrieval_ms=decided.get("retrieval_ms"),
        )
