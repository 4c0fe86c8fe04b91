"""The Session's state machine: the transition tables, and scripted timelines under the virtual clock.

The timelines drive a real Session and a real Engine with fakes for the models (a scripted VAD, an STT
that returns the script's words, an LLM that answers after a time to first token, a tone voice), so
turn-taking and barge-in are tested by the order and the clock times of the events, deterministically.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from agent.events import AgentTranscript, SessionEvent, StateChanged, TurnMetrics, UserTranscript
from agent.persona import Persona, load_persona
from agent.session import Session
from agent.states import (
    OVERLAP_MOVES,
    PHASE_MOVES,
    PUBLIC,
    IllegalTransition,
    Overlap,
    Phase,
    StateMachine,
)
from agent.turn import SmartTurnModel, TurnDetector, silence_for
from agent.vad import VADEvent
from avatar_core.config import AppearanceConfig, VideoConfig
from avatar_core.engine import Engine, SpeechHandle, Utterance, VirtualClock
from avatar_core.engine.mixing import ACK_S
from avatar_core.frames import AUDIO_RATE, AudioFrame, VideoFrame
from avatar_core.motion import INDEX, MOTION_DIM
from avatar_core.render.stylized import StylizedRenderer
from avatar_core.teacher.speaking import Phone

RATE = 16_000
CHUNK = 320  # 20 ms of user audio, one per engine audio frame


# -- the tables -------------------------------------------------------------------------------------


def reachable(
    moves: dict[Phase, frozenset[Phase]] | dict[Overlap, frozenset[Overlap]], start: object
) -> set[object]:
    seen, todo = {start}, deque([start])
    while todo:
        for nxt in moves[todo.popleft()]:  # type: ignore[index]
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize(
    ("moves", "initial", "rest"),
    [(PHASE_MOVES, Phase.IDLE, Phase.IDLE), (OVERLAP_MOVES, Overlap.NONE, Overlap.NONE)],
    ids=["phase", "overlap"],
)
def test_every_state_is_reachable_and_can_come_back(moves: dict, initial: object, rest: object) -> None:  # type: ignore[type-arg]
    states = set(type(initial))  # type: ignore[call-overload]
    assert reachable(moves, initial) == states
    for state in states:
        assert rest in reachable(moves, state), f"{state} never comes back to {rest}"


@dataclass
class Recorder:
    """Records each move a machine makes."""

    moves: list[tuple[Any, Any]]

    def __call__(self, previous: Any, new: Any) -> None:
        self.moves.append((previous, new))


@pytest.mark.parametrize(("moves", "initial"), [(PHASE_MOVES, Phase.IDLE), (OVERLAP_MOVES, Overlap.NONE)])
def test_every_move_the_table_allows_is_taken_and_every_other_refused(moves: dict, initial: object) -> None:  # type: ignore[type-arg]
    kinds = list(type(initial))  # type: ignore[call-overload]
    for source in kinds:
        for target in kinds:
            seen: list[tuple[Any, Any]] = []
            machine = StateMachine[Any]("test", source, moves, Recorder(seen))
            if target == source:
                assert not machine.move(target) and not seen
            elif target in moves[source]:
                assert machine.move(target) and machine.state == target and seen == [(source, target)]
            else:
                with pytest.raises(IllegalTransition, match=f"{source.name} -> {target.name}"):
                    machine.move(target)
                assert machine.state == source and not seen


def test_every_phase_shows_a_state_and_closing_is_always_allowed() -> None:
    assert set(PUBLIC) == set(Phase)
    assert all(Phase.IDLE in PHASE_MOVES[p] for p in Phase if p is not Phase.IDLE)
    assert PHASE_MOVES[Phase.IDLE] == {Phase.LISTENING}  # only start() leaves idle


def test_a_table_without_a_row_is_refused() -> None:
    partial: dict[Phase, frozenset[Phase]] = {p: m for p, m in PHASE_MOVES.items() if p is not Phase.SPEAKING}
    with pytest.raises(ValueError, match="SPEAKING"):
        StateMachine[Phase]("broken", Phase.IDLE, partial)


# -- fakes driven by a script -----------------------------------------------------------------------


class ScriptedVAD:
    """Voice activity from a script of (start, end) seconds, with StreamingVAD's rules: speech starts
    after ``min_speech_s`` of voice (at its onset) and ends after ``min_silence_s`` of silence."""

    def __init__(
        self, segments: list[tuple[float, float]], min_speech_s: float, min_silence_s: float
    ) -> None:
        self.segments = segments
        self.min_speech_s = min_speech_s
        self.min_silence_s = min_silence_s
        self.speaking = False
        self.run_s = 0.0
        self._onset: float | None = None
        self._voice_until = 0.0

    def push(self, samples: npt.NDArray[np.float32], t: float) -> list[VADEvent]:
        end = t + samples.size / RATE
        events: list[VADEvent] = []
        if any(a <= t < b for a, b in self.segments):
            self._onset = t if self._onset is None else self._onset
            self._voice_until = end
            self.run_s = end - self._onset
            if not self.speaking and self.run_s >= self.min_speech_s - 1e-9:
                self.speaking = True
                events.append(VADEvent("speech_start", self._onset, self.run_s))
            return events
        self._onset, self.run_s = None, 0.0
        if self.speaking and end - self._voice_until >= self.min_silence_s - 1e-9:
            self.speaking = False
            events.append(VADEvent("speech_end", self._voice_until, 0.0))
        return events


@dataclass
class ScriptedSTT:
    """Recognises the script's words for whatever audio it is given; with ``pieces``, one piece per
    call, in order (the words of the audio it is given, piece by piece)."""

    text: str
    calls: int = 0
    pieces: list[str] = field(default_factory=list)
    heard_s: list[float] = field(default_factory=list)  # seconds of audio of each call

    async def transcribe(self, audio: npt.NDArray[np.float32]) -> str:
        self.calls += 1
        self.heard_s.append(audio.size / RATE)
        return self.pieces[self.calls - 1] if self.pieces else self.text

    async def aclose(self) -> None:
        """Nothing to release."""


@dataclass
class ScriptedLLM:
    """Answers every request with ``reply``, word by word, the first after ``ttft_s`` (wall time)."""

    reply: str
    ttft_s: float = 0.1
    requests: list[list[dict[str, str]]] = field(default_factory=list)

    async def stream(self, messages: list[dict[str, str]]) -> AsyncIterator[str]:
        self.requests.append(messages)
        await asyncio.sleep(self.ttft_s)
        for i, word in enumerate(self.reply.split()):
            yield word if i == 0 else " " + word


class ScriptedTurnModel(SmartTurnModel):
    """Smart Turn's place: the probabilities that the turn is complete, one per pause, in order."""

    def __init__(self, probabilities: list[float]) -> None:
        self.probabilities = deque(probabilities)
        self.heard: list[float] = []  # seconds of audio it was asked about

    def predict(self, audio: npt.NDArray[np.float32]) -> float:
        self.heard.append(audio.size / RATE)
        return self.probabilities.popleft()


class ToneVoice:
    """A voice that says each word as 0.25 s of a 220 Hz tone (a test double for a TTS)."""

    fps = 25.0
    word_s = 0.25

    def utterance(self, text: str) -> Utterance:
        words = text.split()
        duration = self.word_s * max(1, len(words))
        t = np.arange(round(duration * AUDIO_RATE)) / AUDIO_RATE
        audio = (8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)  # (S,) 24 kHz
        motion = np.zeros((round(duration * self.fps), MOTION_DIM), np.float32)  # (T, D)
        phones = [Phone("a", i * self.word_s, (i + 1) * self.word_s) for i in range(len(words))]
        return Utterance(text, audio, motion, self.fps, phones, [duration])


def persona(detector: str = "silence") -> Persona:
    data = load_persona("default").model_dump()
    data["llm"]["greeting"] = ""
    data["stt"]["partials"] = False
    data["turn_taking"]["turn_detector"] = detector
    return Persona.model_validate(data)


@dataclass
class Timeline:
    """A Session on the virtual clock with scripted models; ``run`` feeds silence or the script's voice
    (a tone in the voiced segments) in step with the engine's frames."""

    segments: list[tuple[float, float]]
    heard: str = "What time does the library open?"
    reply: str = "It opens at nine."
    ttft_s: float = 0.1
    turn_p: list[float] | None = None  # Smart Turn's answers, one per pause; None: silence alone
    heard_pieces: list[str] = field(default_factory=list)
    events: list[SessionEvent] = field(default_factory=list)
    audio: list[AudioFrame] = field(default_factory=list)
    video: list[VideoFrame] = field(default_factory=list)
    phases: list[tuple[float, Phase]] = field(default_factory=list)  # each change, after a chunk
    overlaps: list[tuple[float, Overlap]] = field(default_factory=list)  # each change, after a chunk
    said: list[tuple[float, bool, SpeechHandle]] = field(default_factory=list)  # Engine.say: t, held, handle

    def __post_init__(self) -> None:
        p = persona("silence" if self.turn_p is None else "smart_turn")
        turn_taking = p.turn_taking
        confirm_ms = turn_taking.end_of_turn_silence_ms if self.turn_p is None else turn_taking.min_wait_ms
        self.vad = ScriptedVAD(self.segments, turn_taking.min_speech_ms / 1000, confirm_ms / 1000)
        self.model = ScriptedTurnModel(self.turn_p or [])
        self.detector = TurnDetector(turn_taking, self.model)
        self.stt = ScriptedSTT(self.heard, pieces=self.heard_pieces)
        self.llm = ScriptedLLM(self.reply, self.ttft_s)
        renderer = StylizedRenderer(
            AppearanceConfig(video=VideoConfig(width=128, height=128)).stylized, 128, 128
        )
        self.engine = Engine(ToneVoice(), renderer, p.behaviour, clock=VirtualClock())
        self.session = Session(p, self.engine, self.stt, self.llm, vad=self.vad, turn_detector=self.detector)
        self.session.on(self.events.append)
        say = self.engine.say

        def recorded_say(text: str | AsyncIterable[str], *, held: bool = False) -> SpeechHandle:
            handle = say(text, held=held)
            self.said.append((self.engine.clock.now(), held, handle))
            return handle

        self.engine.say = recorded_say  # type: ignore[method-assign]

    async def run(self, until: float) -> None:
        async for frame in self.engine.frames():
            if isinstance(frame, VideoFrame):
                self.video.append(frame)
            if not isinstance(frame, AudioFrame):
                continue
            self.audio.append(frame)
            t = frame.pts_s
            voiced = any(a <= t < b for a, b in self.segments)
            chunk = (0.1 * np.sin(np.arange(CHUNK) * 0.3) if voiced else np.zeros(CHUNK)).astype(np.float32)
            await self.session.push_audio(chunk, t)
            if not self.phases or self.phases[-1][1] is not self.session.phase:
                self.phases.append((t, self.session.phase))
            if not self.overlaps or self.overlaps[-1][1] is not self.session.overlap:
                self.overlaps.append((t, self.session.overlap))
            if t >= until:
                break

    async def close(self) -> None:
        await self.session.aclose()
        await self.engine.aclose()

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events if isinstance(e, kind)]

    def audible(self) -> list[float]:
        return [f.pts_s for f in self.audio if f.speech_id is not None and np.abs(f.samples).max() > 300]


async def test_a_scripted_turn_in_order_and_on_time() -> None:
    """User speaks 0.5-2.5 s; the LLM answers with a TTFT of 0.1 s."""
    line = Timeline([(0.5, 2.5)])
    silence_s = persona().turn_taking.end_of_turn_silence_ms / 1000
    await line.session.start()
    await line.run(6.0)
    await line.close()

    kinds = [
        (type(e).__name__, getattr(e, "state", None))
        for e in line.events
        if not isinstance(e, AgentTranscript)
    ]
    assert kinds == [
        ("StateChanged", "listening"),
        ("StateChanged", "thinking"),
        ("UserTranscript", None),
        ("StateChanged", "speaking"),
        ("TurnMetrics", None),
        ("StateChanged", "listening"),
        ("StateChanged", "idle"),
    ]
    states = line.of(StateChanged)
    thinking, speaking, done = states[1], states[2], states[3]
    # The turn ends after the persona's end-of-turn silence, on the 20 ms frame grid.
    assert thinking.t == pytest.approx(2.5 + silence_s, abs=0.021)
    (user,) = line.of(UserTranscript)
    assert user.final and user.text == line.heard and user.start == pytest.approx(0.5, abs=1e-6)
    assert user.end == pytest.approx(2.5, abs=1e-6) and user.t == thinking.t
    # Recognition and the LLM started in the silence (speculation), once: the first audio follows at
    # once on the virtual clock and the avatar never talks over the user.
    assert line.stt.calls == 1 and len(line.llm.requests) == 1
    audible = line.audible()
    assert audible and audible[0] >= thinking.t and speaking.t == pytest.approx(audible[0], abs=0.021)
    # Four words of 0.25 s, played out in full.
    assert done.t - speaking.t == pytest.approx(4 * ToneVoice.word_s, abs=0.05)
    agent = [e for e in line.of(AgentTranscript) if e.final]
    assert [a.text for a in agent] == [line.reply] and not agent[0].interrupted
    assert line.session.history.messages()[-2:] == [
        {"role": "user", "content": line.heard},
        {"role": "assistant", "content": line.reply},
    ]
    (metrics,) = line.of(TurnMetrics)
    assert metrics.end_of_turn == pytest.approx(1000 * silence_s, abs=21)
    stages = [metrics.end_of_turn, metrics.transcript, metrics.first_token, metrics.first_audio]
    known = [s for s in stages if s is not None]
    assert len(known) == len(stages) and known == sorted(known)
    assert metrics.llm_ttft_ms is not None and metrics.llm_ttft_ms >= 1000 * line.ttft_s
    # The floor: the user's turn opens once the VAD confirms the speech (min_speech_ms).
    min_speech_s = persona().turn_taking.min_speech_ms / 1000
    assert [p for _, p in line.phases] == [
        Phase.LISTENING, Phase.USER_SPEAKING, Phase.THINKING, Phase.SPEAKING, Phase.LISTENING
    ]  # fmt: skip
    assert line.phases[1][0] == pytest.approx(0.5 + min_speech_s, abs=0.021)
    assert line.phases[2][0] == pytest.approx(thinking.t, abs=0.021)


async def test_a_scripted_barge_in_pauses_then_interrupts_and_keeps_only_the_played_words() -> None:
    """The avatar says a long line; the user talks over it from 1.0 s to 2.5 s."""
    line = Timeline([(1.0, 2.5)], heard="Sorry, where is the toilet?", reply="Down the hall.")
    barge_in_s = persona().turn_taking.barge_in_min_speech_ms / 1000
    await line.session.start()
    long_line = " ".join(["word"] * 40)  # 10 s of tone
    line.session.history.add_user("Tell me a story.")
    handle = await line.session.say(long_line)
    await line.run(6.0)
    await line.close()

    overlaps = line.overlaps
    assert [o for _, o in overlaps] == [Overlap.NONE, Overlap.HEARD, Overlap.PAUSED, Overlap.NONE]
    assert overlaps[1][0] == pytest.approx(1.0, abs=1e-6)  # heard at once
    assert overlaps[2][0] - 1.0 == pytest.approx(0.1, abs=0.021)  # paused after 100 ms of voice
    silent = [f.pts_s for f in line.audio if f.pts_s > 1.0 and f.speech_id is None]
    assert silent and silent[0] - 1.0 <= 0.2  # the avatar is quiet within 200 ms
    assert handle.interrupted
    interrupted_at = overlaps[3][0]
    assert interrupted_at - 1.0 == pytest.approx(barge_in_s, abs=0.041)
    spoken = handle.played_text()
    assert spoken and long_line.startswith(spoken) and len(spoken) < len(long_line)
    history = line.session.history.messages()
    assert history[1:3] == [
        {"role": "user", "content": "Tell me a story."},
        {"role": "assistant", "content": spoken},  # only the words actually played
    ]
    states = [e.state for e in line.of(StateChanged)]
    assert states[:5] == ["listening", "speaking", "listening", "thinking", "speaking"]
    user = [e for e in line.of(UserTranscript) if e.final]
    assert [u.text for u in user] == [line.heard] and user[0].start == pytest.approx(1.0, abs=0.021)


async def test_a_scripted_backchannel_pauses_and_resumes() -> None:
    """A 200 ms "mm-hm" at 1.0 s: playback pauses at 100 ms, resumes after 300 ms of silence."""
    line = Timeline([(1.0, 1.2)])
    await line.session.start()
    long_line = " ".join(["word"] * 12)  # 3 s of tone
    handle = await line.session.say(long_line)
    await line.run(5.0)
    await line.close()
    assert not handle.interrupted and handle.played_text() == long_line
    assert not line.of(UserTranscript) and line.stt.calls == 0
    assert [o for _, o in line.overlaps] == [Overlap.NONE, Overlap.HEARD, Overlap.PAUSED, Overlap.NONE]
    gap = [f.pts_s for f in line.audio if 1.0 < f.pts_s < 2.0 and f.speech_id is None]
    assert gap and gap[0] == pytest.approx(1.1, abs=0.021)  # held while the user's voice lasted
    assert gap[-1] == pytest.approx(1.2 + 0.3, abs=0.041)  # resumed after 300 ms of silence
    assert [e.state for e in line.of(StateChanged)] == ["listening", "speaking", "listening", "idle"]


async def test_illegal_input_after_close_is_refused() -> None:
    line = Timeline([])
    await line.session.start()
    await line.close()
    assert line.session.phase is Phase.IDLE
    with pytest.raises(RuntimeError, match="closed"):
        await line.session.say("Hello.")
    await line.session.push_audio(np.zeros(CHUNK, np.float32), 0.0)  # ignored
    assert [e.state for e in line.of(StateChanged)] == ["listening", "idle"]


# -- Smart Turn in the Session ----------------------------------------------------------------------


@pytest.mark.parametrize("p", [1.0, 0.5, 0.0])
async def test_smart_turn_sets_how_long_the_pause_must_last(p: float) -> None:
    """User speaks 0.5-2.5 s; after min_wait_ms of silence the model is asked once, and its probability
    picks the silence that ends the turn (min_wait_ms when sure, max_wait_ms when sure it goes on)."""
    line = Timeline([(0.5, 2.5)], turn_p=[p])
    turn_taking = persona("smart_turn").turn_taking
    await line.session.start()
    await line.run(6.0)
    await line.close()
    (decided,) = line.model.heard
    # The model heard the turn from half a second before its speech, and min_wait_ms of silence.
    assert decided == pytest.approx(2.0 + 0.5 + turn_taking.min_wait_ms / 1000, abs=0.041)
    wait_s = silence_for(p, turn_taking.min_wait_ms / 1000, turn_taking.max_wait_ms / 1000)
    thinking = [e for e in line.of(StateChanged) if e.state == "thinking"]
    assert len(thinking) == 1 and thinking[0].t == pytest.approx(2.5 + wait_s, abs=0.041)
    (metrics,) = line.of(TurnMetrics)
    assert metrics.end_of_turn == pytest.approx(1000 * wait_s, abs=41)
    assert [u.text for u in line.of(UserTranscript) if u.final] == [line.heard]


async def test_a_speculative_reply_is_discarded_when_the_user_goes_on() -> None:
    """ "I'd like to book ... an appointment": the model hears the 0.7 s pause as unfinished (p = 0), so
    the turn stays open; the answer started in the pause is dropped when the user goes on, the words
    before the pause are kept (only the rest is recognised again), and the history holds only what was
    said."""
    first, rest = "I'd like to book", "an appointment for Tuesday."
    whole = f"{first} {rest}"
    line = Timeline([(0.5, 1.5), (2.2, 3.2)], turn_p=[0.0, 1.0], heard=whole, heard_pieces=[first, rest])
    await line.session.start()
    await line.run(7.0)
    await line.close()
    assert len(line.model.heard) == 2  # asked once per pause
    # The LLM was asked first about the half sentence (speculatively, in the pause), then about the whole.
    asked = [r[-1]["content"] for r in line.llm.requests]
    assert asked == [first, whole]
    # Recognition overlapped the user: the second call heard only the audio after the first pause (from
    # where the first speculation read to, into the pause, until the second's: about 3.2 - 1.5 s, plus
    # the VAD's lag at the end of speech), not the whole turn (3 s).
    assert line.stt.calls == 2 and line.stt.heard_s[1] < 3.2 - 1.5 + 0.1
    assert [u.text for u in line.of(UserTranscript) if u.final] == [whole]
    assert [e.state for e in line.of(StateChanged)].count("thinking") == 1
    agent = [e for e in line.of(AgentTranscript) if e.final]
    assert [a.text for a in agent] == [line.reply]
    assert [m for m in line.session.history.messages() if m["role"] != "system"] == [
        {"role": "user", "content": whole},
        {"role": "assistant", "content": line.reply},
    ]
    # Each pause's answer was made held; the first was dropped unplayed, the second played.
    assert [held for _, held, _ in line.said] == [True, True]
    (_, _, dropped), (_, _, kept) = line.said
    assert dropped.interrupted and dropped.played_s == 0 and agent[0].speech_id == kept.id
    thinking = next(e for e in line.of(StateChanged) if e.state == "thinking")
    assert min(line.audible()) >= thinking.t  # nothing was heard while the user spoke


@pytest.mark.parametrize(("gap_s", "settles"), [(0.02, False), (0.1, True)])
async def test_only_a_long_enough_silence_settles_the_words_before_it(gap_s: float, settles: bool) -> None:
    """Recognition starts on the first silent frame, even inside a turn; when the user goes on, the words
    read in a silence shorter than SETTLE_AFTER_S (which may fall inside a word) are read again with
    what follows, and those before a longer one are kept."""
    first, rest = "I'd like to book", "an appointment for Tuesday."
    whole = f"{first} {rest}"
    pieces = [first, rest] if settles else [first, whole]  # what each call hears
    line = Timeline([(0.5, 1.5), (1.5 + gap_s, 3.0)], turn_p=[1.0], heard=whole, heard_pieces=pieces)
    await line.session.start()
    await line.run(5.0)
    await line.close()
    assert line.stt.calls == 2  # in the gap, and at the end
    if settles:  # the second call heard only what followed the gap
        assert line.stt.heard_s[1] < 3.0 - 1.5 + 0.1
    else:  # the whole turn again
        assert line.stt.heard_s[1] > 3.0 - 0.5
    assert [u.text for u in line.of(UserTranscript) if u.final] == [whole]
    assert [m["content"] for m in line.session.history.messages() if m["role"] == "user"] == [whole]


@pytest.mark.parametrize("p", [1.0, 0.5])
async def test_the_answer_begun_in_the_pause_is_made_held_and_plays_when_the_turn_ends(p: float) -> None:
    """The reply the LLM began in the pause is given to the Engine held, before the turn ends (its first
    chunk is synthesized while the pause lasts); the turn's end plays that very speech, not a new one."""
    line = Timeline([(0.5, 2.5)], turn_p=[p])
    await line.session.start()
    await line.run(6.0)
    await line.close()
    thinking = next(e for e in line.of(StateChanged) if e.state == "thinking")
    ((made_at, held, handle),) = line.said
    assert held and 2.5 <= made_at < thinking.t  # in the pause (on the virtual clock, at its start)
    (agent,) = [e for e in line.of(AgentTranscript) if e.final]
    assert agent.speech_id == handle.id and agent.text == line.reply and not handle.interrupted
    assert min(line.audible()) >= thinking.t
    (metrics,) = line.of(TurnMetrics)
    assert metrics.llm_ttft_ms is not None and metrics.llm_ttft_ms >= 1000 * line.ttft_s


async def test_the_acknowledgement_motion_starts_when_the_turn_ends() -> None:
    """Within 200 ms of the end of the turn (state ``thinking``) the face nods with raised brows, before
    the voice is ready."""
    line = Timeline([(0.5, 2.5)], ttft_s=0.3)
    await line.session.start()
    await line.run(5.0)
    await line.close()
    thinking = next(e for e in line.of(StateChanged) if e.state == "thinking")
    brows = [(f.pts_s, float(f.motion[INDEX["brow_up_l"]])) for f in line.video]
    pitch = {f.pts_s: float(f.motion[INDEX["head_pitch"]]) for f in line.video}
    before = max(b for t, b in brows if thinking.t - 1.0 <= t < thinking.t)
    raised = [t for t, b in brows if thinking.t <= t < thinking.t + ACK_S and b > before + 0.1]
    assert raised and raised[0] - thinking.t <= 0.2  # it starts at once
    assert max(b for t, b in brows if t < thinking.t) < before + 0.1  # not before the turn ended
    peak = raised[len(raised) // 2]
    assert pitch[peak] > pitch[max(t for t, _ in brows if t < thinking.t)]  # with a nod
    assert all(b < before + 0.1 for t, b in brows if t >= thinking.t + ACK_S + 0.2)  # and it is over
