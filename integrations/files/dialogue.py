"""A scene of two avatars talking with each other, into a file: two Engines on one virtual clock.

Each persona has its own Engine (its own face, voice and listening behaviour). The two run in lockstep,
20 ms at a time; each perceives the other as it would perceive a person in front of its camera: the
other's audio goes through a VAD and :class:`~avatar_core.listening_features.ListeningFeatures`, and the
other's face motion gives the face features a camera would (:class:`AvatarPartner`). Neither is told
its role: it speaks when it has a line to say and listens otherwise. Lines come from a script or from
each persona's own LLM (:class:`ScriptedLines`, :class:`DrivenLines`); each line starts a short gap
after the previous one's last audible sound (now and then it overlaps it a little).

Out come one MP4 with both faces side by side (or one per avatar) and the mixed voices, a transcript
with each line's times, and the listener metrics of :mod:`avatar_core.eval.listener`.

Letters in shape comments: S audio samples, D = MOTION_DIM.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import yaml

from agent.llm import ChatHistory, ChatLLM, LLMError
from agent.persona import EMBEDDED, Persona, TurnTakingConfig
from agent.vad import HeardVoice, StreamingVAD
from avatar_core.config import AppSettings
from avatar_core.engine import Engine, SpeechHandle, Utterance, VirtualClock, Voice
from avatar_core.eval.listener import SceneTrack, listener_report
from avatar_core.eval.metrics import bilabial_intervals
from avatar_core.frames import AUDIO_FRAME_S, AUDIO_RATE, AudioFrame, VideoFrame
from avatar_core.listening_features import ListeningFeatures
from avatar_core.media import Mp4Writer
from avatar_core.motion import INDEX, FloatArray
from avatar_core.partner import PartnerFrame
from avatar_core.render import make_renderer
from avatar_core.text.chunking import chunk_text
from integrations.llm.local_server import LOCAL_API_KEY, LocalLLMServer
from integrations.stack import SharedModels, build_voice
from integrations.transport import UserAudio

log = logging.getLogger(__name__)

Layout = Literal["side-by-side", "separate"]
CascadeFace = Literal["teacher", "model"]

GAP_S = (0.2, 0.5)  # silence between one line's last sound and the next line's first
OVERLAP_CHANCE = 0.1  # now and then the next speaker starts before the last one has quite finished
OVERLAP_S = (0.1, 0.25)
TAIL_S = 0.5  # the scene ends this long after the last line
SILENCE_RMS = 10 ** (-45 / 20)  # quieter audio is silence when finding a line's audible start and end
NOD_WINDOW_S = 0.5  # a nod is the head's largest pitch rise within this window (as the camera reads it)
MAX_WAIT_S = 600.0  # no line for this long (scene time): something is stuck


class DialogueError(ValueError):
    """The scene cannot be made as asked; the message says what to change."""


# ---------------------------------------------------------------------------------------------------
# Lines: from a script or from the personas' LLMs
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One line of the scene: who says it (0 or 1, the order of ``--personas``) and what."""

    speaker: int
    text: str


class LineSource(Protocol):
    """Where the scene's lines come from; ``next_line`` is called once the previous line is known."""

    async def next_line(self) -> Line | None:
        """The next line, or None when the scene is over."""
        ...

    async def aclose(self) -> None:
        """Release what the source holds (LLM clients)."""
        ...


def speaker_names(persona: Persona, given: str) -> set[str]:
    """The names a script may use for a persona: as given on the command line, its file stem and its
    display name, all lower-case."""
    return {given.lower(), Path(given).stem.lower(), persona.identity.display_name.lower()}


def read_script(path: Path, names: Sequence[set[str]]) -> list[Line]:
    """A YAML list of ``{speaker, text}`` -> lines; ``names[i]``: the names that mean persona ``i``."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DialogueError(f"cannot read the script {path}: {exc}") from None
    if not isinstance(data, list) or not data:
        raise DialogueError(f"{path}: a script is a non-empty YAML list of {{speaker: NAME, text: WORDS}}")
    lines = []
    for number, item in enumerate(data, 1):
        if not isinstance(item, dict) or set(item) != {"speaker", "text"}:
            raise DialogueError(
                f"{path}, line {number}: write it as {{speaker: NAME, text: WORDS}}, got {item!r}"
            )
        who, text = str(item["speaker"]).strip().lower(), str(item["text"]).strip()
        matches = [i for i, known in enumerate(names) if who in known]
        if len(matches) != 1:
            choices = " or ".join(sorted(names[0])) + " / " + " or ".join(sorted(names[1]))
            problem = "matches both personas" if matches else "is neither persona"
            raise DialogueError(
                f"{path}, line {number}: speaker {item['speaker']!r} {problem}; use {choices}"
            )
        if not text:
            raise DialogueError(f"{path}, line {number}: the text is empty")
        lines.append(Line(matches[0], text))
    return lines


class ScriptedLines:
    """The lines of a script, in order."""

    def __init__(self, lines: Sequence[Line]) -> None:
        self._lines = deque(lines)

    async def next_line(self) -> Line | None:
        return self._lines.popleft() if self._lines else None

    async def aclose(self) -> None:
        return None


def _spoken_form(text: str) -> str:
    """An LLM reply as a line: stage directions ("(smiles)", "*nods*"), markdown and emoji-like symbols
    dropped, whitespace collapsed (small models like to narrate)."""
    text = re.sub(r"\([^)]*\)?|\*[^*]*\*?|\[[^\]]*\]?", " ", text)
    text = re.sub(r"[*_#`>]", "", text)
    text = "".join(ch for ch in text if ch.isprintable() and ord(ch) < 0x2600)
    return re.sub(r"\s+([,.!?;:])", r"\1", " ".join(text.split()))


class DrivenLines:
    """Lines from each persona's own LLM: its system prompt, and a history from its own point of view
    (its lines are the assistant's, the partner's are the user's). Persona 0 opens on ``topic``."""

    def __init__(self, personas: Sequence[Persona], llms: Sequence[ChatLLM], topic: str, turns: int) -> None:
        if turns < 1:
            raise DialogueError(f"--turns must be >= 1, got {turns}")
        if not topic.strip():
            raise DialogueError("--topic is empty: say what the two talk about")
        self.personas = personas
        self.llms = llms
        self.turns = turns
        self.count = 0
        self.histories = []
        for i, persona in enumerate(personas):
            other = personas[1 - i].identity.display_name
            prompt = (
                f"{persona.llm.system_prompt}\nYou are talking face to face with {other}. "
                "Say one or two short spoken sentences at a time, without lists, markdown or emoji."
            )
            self.histories.append(ChatHistory(prompt, persona.llm.history_turns))
        self.histories[0].add_user(
            f"{other_name(personas, 0)} has just come up to you. Greet them and talk about {topic.strip()}."
        )

    async def next_line(self) -> Line | None:
        if self.count >= self.turns:
            return None
        speaker = self.count % 2
        self.count += 1
        persona, llm, history = self.personas[speaker], self.llms[speaker], self.histories[speaker]
        try:
            text = _spoken_form("".join([delta async for delta in llm.stream(history.messages())]))
        except LLMError as exc:
            log.warning("%s's LLM failed (%s); it says its fallback line", persona.identity.display_name, exc)
            text = ""
        text = text or persona.llm.fallback_line
        history.add_assistant(text, generated=True)
        self.histories[1 - speaker].add_user(text)
        return Line(speaker, text)

    async def aclose(self) -> None:
        for llm in self.llms:
            await llm.aclose()


def other_name(personas: Sequence[Persona], i: int) -> str:
    """The display name of persona ``i``'s partner."""
    return personas[1 - i].identity.display_name


# ---------------------------------------------------------------------------------------------------
# Perceiving the other avatar
# ---------------------------------------------------------------------------------------------------


def _ramp(value: float, dead: float, full: float) -> float:
    return min(1.0, max(0.0, (value - dead) / full))


class AvatarPartner:
    """Another avatar's output -> :class:`PartnerFrame` records, as a person's microphone and camera give
    them: its audio through a VAD and :class:`ListeningFeatures` (energy, F0), its face motion through
    the same scales that :class:`ListeningFeatures` reads from a camera image of that motion.

    ``hear`` is blocking (the VAD, the F0 tracker): call it from a worker thread.
    """

    def __init__(self, turn_taking: TurnTakingConfig, features: ListeningFeatures | None = None) -> None:
        self.voice = HeardVoice(turn_taking.vad_threshold, turn_taking.min_speech_ms)
        self.features = features or ListeningFeatures()
        self.audio = UserAudio()  # 24 kHz int16 -> 16 kHz float32, one resampler for the stream
        self._pitch: deque[tuple[float, float]] = deque()  # (t, head pitch) over the last NOD_WINDOW_S
        self._face = (0.0, 0.0, 0.0, 0.0)  # smile, mouth_open, brow_raise, nod
        self._face_t = -math.inf
        self._heard = 0  # 16 kHz samples so far: the time of the next one

    def hear(self, samples: npt.NDArray[np.int16]) -> None:
        """The other avatar's next audio (S,) at 24 kHz, continuous from time 0."""
        pcm = self.audio.push_pcm(samples, AUDIO_RATE, 1)  # (S',) at 16 kHz
        t = self._heard / StreamingVAD.SAMPLE_RATE
        self._heard += pcm.size
        if pcm.size:
            self.features.push_audio(pcm, t, self.voice.push(pcm, t))

    def see(self, motion: FloatArray, t: float) -> None:
        """The other avatar's face at ``t``: its motion frame (D,)."""
        pitch = float(motion[INDEX["head_pitch"]])
        self._pitch.append((t, pitch))
        while self._pitch[0][0] < t - NOD_WINDOW_S - 1e-9:
            self._pitch.popleft()
        pitches = np.array([p for _, p in self._pitch])
        rise = float(np.max(pitches - np.minimum.accumulate(pitches)))  # chin down = pitch up
        # The scales at which ListeningFeatures reads a rendered face: smile 0.5 -> 0.5, jaw_open 0.7 ->
        # 0.5, brow_up 0.5 -> 0.5, a nod of 0.1 rad -> 0.4 and of 0.2 rad -> 1.
        smile = 0.5 * float(motion[INDEX["smile_l"]] + motion[INDEX["smile_r"]])
        brow = 0.5 * float(motion[INDEX["brow_up_l"]] + motion[INDEX["brow_up_r"]])
        mouth = 0.5 / 0.7 * float(motion[INDEX["jaw_open"]])
        self._face = (min(1.0, smile), min(1.0, mouth), min(1.0, brow), _ramp(rise, 1 / 30, 1 / 6))
        self._face_t = t

    def frame(self, t: float) -> PartnerFrame:
        """The perception of the other avatar at ``t``."""
        heard = self.features.frame(t)
        smile, mouth, brow, nod = self._face
        visible = t - self._face_t <= 1.0
        return dataclasses.replace(
            heard, face_visible=visible, smile=smile, mouth_open=mouth, brow_raise=brow, nod=nod
        )


# ---------------------------------------------------------------------------------------------------
# One avatar of the scene
# ---------------------------------------------------------------------------------------------------


class RecordingVoice:
    """A voice that keeps every utterance it makes (for line timing, transcripts and lip-sync scores) and
    synthesizes a line's chunks ahead (``ahead``) as soon as the line is known, while the scene plays
    the lines before it: synthesis then overlaps rendering instead of holding the virtual clock.

    All synthesis runs in one worker thread, in the order asked, so a voice with state (a random
    generator) gives the same speech as without synthesizing ahead.
    """

    def __init__(self, voice: Voice) -> None:
        self.voice = voice
        self.fps = voice.fps
        self.utterances: list[Utterance] = []
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="dyad-synth-ahead")
        self._ahead: dict[str, deque[Future[Utterance]]] = {}
        self._lock = threading.Lock()  # _ahead: filled on the event loop, taken in the Engine's thread

    def ahead(self, text: str) -> None:
        """Start synthesizing ``text`` in the chunks the Engine will ask for (``chunk_text``)."""
        for chunk in chunk_text(text):
            future = self._pool.submit(self.voice.utterance, chunk)
            with self._lock:
                self._ahead.setdefault(chunk, deque()).append(future)

    def utterance(self, text: str) -> Utterance:
        """The utterance of ``text``: synthesized ahead, or now. Blocking: call it from a worker thread."""
        with self._lock:
            queue = self._ahead.get(text)
            future = queue.popleft() if queue else None
            if queue is not None and not queue:
                del self._ahead[text]
        out = (future or self._pool.submit(self.voice.utterance, text)).result()
        self.utterances.append(out)
        return out

    def close(self) -> None:
        """Drop what was synthesized ahead and stop the worker thread."""
        with self._lock:
            self._ahead.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _audible(audio: npt.NDArray[np.int16]) -> tuple[float, float]:
    """Seconds of silence before the first and after the last audible 10 ms of ``audio`` (S,)."""
    hop = AUDIO_RATE // 100
    frames = audio.size // hop
    if frames == 0:
        return 0.0, 0.0
    wave = audio[: frames * hop].astype(np.float64).reshape(frames, hop) / 32768.0
    loud = np.flatnonzero(np.sqrt((wave * wave).mean(axis=1)) > SILENCE_RMS)
    if loud.size == 0:
        return audio.size / AUDIO_RATE, 0.0
    return loud[0] * hop / AUDIO_RATE, (audio.size - (loud[-1] + 1) * hop) / AUDIO_RATE


@dataclass
class SceneLine:
    """A line being said or said: its handle, and where its utterances sit in the voice's record."""

    line: Line
    handle: SpeechHandle
    first: int  # index of its first utterance in the speaker's RecordingVoice
    chunks: int  # how many utterances it will have
    due: float | None = None  # scene time to start playing (None: not known yet)


@dataclass
class Side:
    """One avatar: its persona, Engine, recorded voice, perception of the other, and what it did."""

    name: str
    persona: Persona
    engine: Engine
    voice: RecordingVoice
    partner: AvatarPartner
    frames: Any  # the Engine's frames() iterator
    video_index: int = 0
    motion: list[FloatArray] = field(default_factory=list)  # (D,) per video frame
    speaking: list[bool] = field(default_factory=list)
    audio: list[npt.NDArray[np.int16]] = field(default_factory=list)  # (480,) per tick
    lines: list[SceneLine] = field(default_factory=list)

    def utterances(self, line: SceneLine) -> list[Utterance] | None:
        """The line's utterances once all are synthesized, else None."""
        done = self.voice.utterances[line.first : line.first + line.chunks]
        return done if len(done) == line.chunks else None


# ---------------------------------------------------------------------------------------------------
# The scene
# ---------------------------------------------------------------------------------------------------


@dataclass
class DialogueResult:
    """What a scene produced."""

    duration_s: float
    wall_s: float
    files: list[Path]
    lines: list[dict[str, Any]]
    metrics: dict[str, Any]
    tracks: list[SceneTrack]  # what each avatar did (motion, speaking, voice, /p b m/ times)
    speech_wait_s: float = 0.0  # of wall_s, the time the scene waited for speech synthesis

    @property
    def speed(self) -> float:
        """Scene seconds per wall second (> 1: faster than real time)."""
        return self.duration_s / self.wall_s if self.wall_s > 0 else float("inf")


class _Output:
    """The MP4 file(s): frames are encoded in a worker thread, one video frame behind the scene; the
    audio of the ticks between video frames goes with the next frame (one hand-off per frame, not per
    tick: each costs a thread switch)."""

    def __init__(self, out: Path, names: Sequence[str], fps: float, layout: Layout, height: int) -> None:
        if layout == "side-by-side":
            self.paths = [out]
        else:
            self.paths = [out.with_name(f"{out.stem}_{_slug(name)}{out.suffix}") for name in names]
        self.writers = [Mp4Writer(path, fps) for path in self.paths]
        self.layout = layout
        self.height = height
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="dyad-encode")
        self._pending: asyncio.Future[None] | None = None
        self._audio: list[npt.NDArray[np.int16]] = []  # (480,) per tick since the last video frame
        self._video_frames = 0

    @property
    def video_frames(self) -> int:
        """Video frames written so far (or queued for writing)."""
        return self._video_frames

    def _fit(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        h, w = image.shape[:2]
        if h == self.height:
            return image
        width = max(2, round(w * self.height / h) // 2 * 2)
        return np.asarray(cv2.resize(image, (width, self.height), interpolation=cv2.INTER_AREA), np.uint8)

    def _write(self, images: list[npt.NDArray[np.uint8]], audio: npt.NDArray[np.int16]) -> None:
        faces = [self._fit(image) for image in images]
        if not faces:
            pass  # the audio held at the end: audio only
        elif self.layout == "side-by-side":
            self.writers[0].write_video(np.hstack(faces))
        else:
            for writer, face in zip(self.writers, faces, strict=True):
                writer.write_video(face)
        for writer in self.writers:
            writer.write_audio(audio)

    async def write(self, images: list[npt.NDArray[np.uint8]], audio: npt.NDArray[np.int16]) -> None:
        """Add the tick's mixed audio (480,) and both faces' frame (none on a tick between frames); a
        frame is queued for encoding with the audio since the last one, after the previous write."""
        self._audio.append(audio)
        if images:
            self._video_frames += 1
            await self._flush(images)

    async def _flush(self, images: list[npt.NDArray[np.uint8]]) -> None:
        if self._pending is not None:
            await self._pending
        audio = np.concatenate(self._audio) if self._audio else np.zeros(0, np.int16)
        self._audio = []
        self._pending = asyncio.get_running_loop().run_in_executor(self._pool, self._write, images, audio)

    async def close(self) -> None:
        """Write the audio still held, then finish the file(s)."""
        if self._audio:
            await asyncio.gather(self._flush([]), return_exceptions=True)
        if self._pending is not None:
            await asyncio.gather(self._pending, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(self._pool, self._close_all)
        self._pool.shutdown(wait=True)

    def _close_all(self) -> None:
        for writer in self.writers:
            writer.close()


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "avatar"


class Scene:
    """Two avatars on one virtual clock, stepped together 20 ms at a time.

    The scene decides only *when* each line starts: a line is given to its speaker's Engine as soon as
    that Engine is free, held (``pause``) so it synthesizes ahead, and released at its due time; the
    Engines do the rest, speaking and listening as they would live.
    """

    def __init__(self, sides: list[Side], source: LineSource, rng: np.random.Generator, fps: float) -> None:
        self.sides = sides
        self.source = source
        self.rng = rng
        self.fps = fps
        self.t = 0.0
        self.order: list[tuple[int, SceneLine]] = []  # every line queued so far, in order
        self._next: asyncio.Task[Line | None] | None = None
        self._waiting: Line | None = None  # a line whose speaker is still busy with its previous one
        self._exhausted = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="dyad-perceive")
        self.speech_wait_s = 0.0  # wall seconds the clock stood still for speech synthesis
        # Per tick not heard yet, each side's audio (480,).
        self._unheard: list[list[npt.NDArray[np.int16]]] = []

    # -- lines --------------------------------------------------------------------------------------

    def _fetch(self) -> None:
        """Ask the source for the next line in the background (an LLM may take a while)."""
        if self._next is None and not self._exhausted and self._waiting is None:
            self._next = asyncio.get_running_loop().create_task(self.source.next_line())

    async def _take_line(self) -> None:
        """Queue the next line on its speaker's Engine if that Engine is free."""
        if self._exhausted:
            return
        if self._waiting is None:
            if self._next is None:
                self._fetch()
            assert self._next is not None
            if not self._next.done() and self.order and not self._previous_done():
                return  # the LLM is still writing; the current line keeps playing meanwhile
            line = await self._next
            self._next = None
            if line is None:
                self._exhausted = True
                return
            self._waiting = line
            self.sides[line.speaker].voice.ahead(line.text)  # lines come in order: so does synthesis
        line = self._waiting
        side = self.sides[line.speaker]
        if side.engine.speaking:
            return  # its previous line is still playing: queue this one once it is done
        self._waiting = None
        side.engine.pause()  # synthesize ahead; released at its due time
        scene_line = SceneLine(line, side.engine.say(line.text), len(side.voice.utterances),
                               len(chunk_text(line.text)))  # fmt: skip
        side.lines.append(scene_line)
        self.order.append((line.speaker, scene_line))
        self._fetch()

    def _previous_done(self) -> bool:
        return all(line.handle.done for _, line in self.order)

    def _end_of(self, speaker: int, line: SceneLine) -> float | None:
        """Scene time of the line's last audible sound, once known."""
        started = line.handle.started_at
        if started is None:
            # Nothing of it played (its synthesis failed): the next line follows where it was due.
            return (line.due if line.due is not None else self.t) if line.handle.done else None
        utterances = self.sides[speaker].utterances(line)
        if utterances is not None:
            total = sum(u.duration_s for u in utterances)
            return started + total - _audible(utterances[-1].audio)[1]
        if line.handle.done:
            return started + line.handle.played_s
        return None

    def _schedule(self) -> None:
        """Set the due time of the first unreleased line once the line before it has a known end."""
        for k, (speaker, line) in enumerate(self.order):
            if line.due is not None:
                continue
            if k == 0:
                line.due = 0.3  # a breath before the first word
                return
            before_speaker, before = self.order[k - 1]
            end = self._end_of(before_speaker, before)
            if end is None:
                return
            first = self.sides[speaker].voice.utterances[line.first : line.first + 1]
            lead = _audible(first[0].audio)[0] if first else 0.0
            gap = float(self.rng.uniform(*GAP_S))
            if before_speaker != speaker and self.rng.uniform() < OVERLAP_CHANCE:
                gap = -float(self.rng.uniform(*OVERLAP_S))
            # An overlap never starts before the line it overlaps is half a second under way.
            line.due = max((before.handle.started_at or 0.0) + 0.5, end + gap - lead)
            return

    def _release(self) -> None:
        for speaker, line in self.order:
            side = self.sides[speaker]
            due = line.due is not None and self.t >= line.due - 1e-9
            if due and line.handle.started_at is None and side.engine.paused:
                side.engine.resume()

    @property
    def finished(self) -> bool:
        """All lines said."""
        return self._exhausted and self._waiting is None and self._previous_done()

    # -- the clock ----------------------------------------------------------------------------------

    async def step(self) -> tuple[list[npt.NDArray[np.uint8]], npt.NDArray[np.int16]]:
        """Advance 20 ms; the video frames made (one per avatar, or none) and the mixed audio (480,)."""
        await self._take_line()
        self._schedule()
        self._release()
        loop = asyncio.get_running_loop()
        audio: list[AudioFrame] = []
        started = time.perf_counter()
        for side in self.sides:
            frame = await anext(side.frames)  # waits while a line that is due is still being synthesized
            assert isinstance(frame, AudioFrame), "the Engine yields an audio frame first on each tick"
            audio.append(frame)
            side.audio.append(frame.samples)
        self.speech_wait_s += time.perf_counter() - started
        # Each hears the other's audio; the perception counts from the tick's end. It is only looked at
        # when a video frame is drawn, so the audio waits for the next frame (one hand-off per frame).
        self._unheard.append([frame.samples for frame in audio])
        if any(self._video_due(side) for side in self.sides):
            heard = [np.concatenate([tick[i] for tick in self._unheard]) for i in range(len(self.sides))]
            self._unheard.clear()
            await loop.run_in_executor(self._pool, self._hear, heard)
            for side in self.sides:
                side.engine.observe_user(side.partner.frame(self.t + AUDIO_FRAME_S))
        # Both faces are drawn at the same time, each in its own Engine's render thread.
        drawn = await asyncio.gather(*(self._video(side) for side in self.sides))
        images = [image for side_images in drawn for image in side_images]
        if images:  # each sees the other's face as just drawn
            for i, side in enumerate(self.sides):
                self.sides[1 - i].partner.see(side.motion[-1], (side.video_index - 1) / self.fps)
        mixed = np.clip(audio[0].samples.astype(np.int32) + audio[1].samples, -32768, 32767).astype(np.int16)
        self.t += AUDIO_FRAME_S
        return images, mixed

    def _video_due(self, side: Side) -> bool:
        """Whether the side draws a video frame in this tick."""
        return side.video_index / self.fps < self.t + AUDIO_FRAME_S - 1e-9

    def _hear(self, audio: list[npt.NDArray[np.int16]]) -> None:
        """Each side hears the other's audio (S,) since the last hearing. Blocking (the VAD, F0)."""
        for i, side in enumerate(self.sides):
            side.partner.hear(audio[1 - i])

    async def _video(self, side: Side) -> list[npt.NDArray[np.uint8]]:
        """The side's video frames of this tick (none or one at 25 fps), recorded in ``side``."""
        images = []
        while self._video_due(side):
            video = await anext(side.frames)
            assert isinstance(video, VideoFrame), "the Engine yields the video frames of a tick"
            side.video_index += 1
            side.motion.append(video.motion)
            side.speaking.append(video.state == "speaking")
            images.append(video.image)
        return images

    async def aclose(self) -> None:
        if self._next is not None:
            self._next.cancel()
            await asyncio.gather(self._next, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- results ------------------------------------------------------------------------------------

    def transcript(self) -> list[dict[str, Any]]:
        """Each line said: speaker, text and times (seconds on the scene clock)."""
        out = []
        for speaker, line in self.order:
            handle = line.handle
            if handle.started_at is None:
                continue
            utterances = self.sides[speaker].utterances(line) or []
            lead = _audible(utterances[0].audio)[0] if utterances else 0.0
            trail = _audible(utterances[-1].audio)[1] if utterances else 0.0
            end = handle.started_at + handle.played_s
            out.append({
                "speaker": self.sides[speaker].name,
                "text": handle.played_text() or line.line.text,
                "start": round(handle.started_at, 3),
                "end": round(end, 3),
                "speech_start": round(handle.started_at + lead, 3),
                "speech_end": round(end - trail, 3),
                "interrupted": handle.interrupted,
            })  # fmt: skip
        return out

    def tracks(self) -> list[SceneTrack]:
        """What each avatar did, for the listener metrics."""
        out = []
        for side in self.sides:
            bilabials: list[tuple[float, float]] = []
            for line in side.lines:
                start = line.handle.started_at
                if start is None:
                    continue
                for utterance in side.utterances(line) or []:
                    bilabials += [(start + a, start + b) for a, b in bilabial_intervals(utterance.phones)]
                    start += utterance.duration_s
            out.append(
                SceneTrack(
                    side.name,
                    np.stack(side.motion).astype(np.float32),
                    np.array(side.speaking, bool),
                    np.concatenate(side.audio),
                    AUDIO_RATE,
                    bilabials,
                )
            )
        return out


async def dialogue(
    personas: Sequence[Persona],
    source: LineSource,
    out: Path,
    transcript: Path | None = None,
    *,
    layout: Layout = "side-by-side",
    height: int | None = None,
    cascade_face: CascadeFace = "teacher",
    seed: int = 0,
    settings: AppSettings | None = None,
    models: SharedModels | None = None,
) -> DialogueResult:
    """Play the scene and write ``out`` (or one MP4 per avatar next to it) and ``transcript`` (JSON).

    ``height``: the video height of both faces (default: the first persona's). ``cascade_face``: how a
    cascade voice's face moves: ``teacher`` from Kokoro's exact phoneme timing (a file has no latency
    budget, and the timing closes the lips on every /p b m/), ``model`` from the audio by the joint
    model, as live. ``models``: the joint model to share (default: loaded here).
    """
    if len(personas) != 2:
        raise DialogueError(f"a dialogue has two personas, got {len(personas)}")
    fps = personas[0].appearance.video.fps
    if personas[1].appearance.video.fps != fps:
        raise DialogueError(
            f"the personas' video rates differ ({fps} and {personas[1].appearance.video.fps} fps): both "
            "avatars share one frame clock, so set appearance.video.fps the same in both"
        )
    settings = settings or AppSettings()
    own = models is None
    shared = models or SharedModels(settings)
    started = time.perf_counter()
    clock = VirtualClock()
    names = [p.identity.display_name for p in personas]
    if names[0] == names[1]:
        names = [f"{names[0]} (1)", f"{names[1]} (2)"]
    sides: list[Side] = []
    output: _Output | None = None
    scene: Scene | None = None
    try:
        joint = await shared.joint_model()
        sides = []
        for i, persona in enumerate(personas):
            size = persona.appearance.video
            w = h = None
            if height is not None:
                w, h = max(2, round(size.width * height / size.height) // 2 * 2), height
            face_model = None if persona.voice.mode == "cascade" and cascade_face == "teacher" else joint
            (voice, driver), renderer = await asyncio.gather(
                asyncio.to_thread(
                    build_voice, persona, settings, None, face_model, kokoro=shared.kokoro_blocking
                ),
                asyncio.to_thread(make_renderer, persona.appearance, w, h),
            )
            recording = RecordingVoice(voice)
            engine = Engine(recording, renderer, persona.behaviour, fps=fps, clock=clock, seed=seed + i,
                            driver=driver, listener=joint)  # fmt: skip
            partner = await asyncio.to_thread(AvatarPartner, persona.turn_taking)
            sides.append(Side(names[i], persona, engine, recording, partner, engine.frames()))
        await asyncio.gather(*(side.engine.warm_up() for side in sides))  # each in its own threads
        for side in sides:
            side.voice.utterances.clear()
        out_height = height or personas[0].appearance.video.height
        output = _Output(out, names, fps, layout, out_height)
        scene = Scene(sides, source, np.random.default_rng(seed), fps)
        last_line_at = 0.0
        end: float | None = None
        while True:
            images, mixed = await scene.step()
            await output.write(images, mixed)
            if not scene.finished:
                if any(side.engine.speaking for side in sides):
                    last_line_at = scene.t
                if scene.t - last_line_at > MAX_WAIT_S:
                    raise DialogueError(f"nobody spoke for {MAX_WAIT_S:.0f} s of scene time; stopping")
                continue
            if end is None:
                end = scene.t + TAIL_S
            audio_s = scene.t
            if audio_s >= end - 1e-9 and abs(output.video_frames / fps - audio_s) < 1e-6:
                break
        lines = scene.transcript()
        tracks = scene.tracks()
        metrics = listener_report(tracks, fps)
    finally:
        if scene is not None:
            await scene.aclose()
        for side in sides:
            await side.engine.aclose()
            side.voice.close()
        await source.aclose()
        if output is not None:
            await output.close()
        if own:
            await shared.aclose()
    duration = scene.t
    wall = time.perf_counter() - started
    result = DialogueResult(
        round(duration, 3), wall, output.paths, lines, metrics, tracks, scene.speech_wait_s
    )
    if transcript is not None:
        payload = {
            "personas": names,
            "seed": seed,
            "layout": layout,
            "files": [str(p) for p in output.paths],
            "duration_s": result.duration_s,
            "lines": lines,
            "metrics": metrics,
        }
        transcript.parent.mkdir(parents=True, exist_ok=True)
        transcript.write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    return result


async def driven_lines(
    personas: Sequence[Persona], topic: str, turns: int, models: SharedModels, seed: int = 0
) -> DrivenLines:
    """A :class:`DrivenLines` with each persona's LLM client (the embedded server started once, shared)."""
    llms = []
    for persona in personas:
        base_url, api_key = persona.llm.base_url, None
        if base_url == EMBEDDED:
            server: LocalLLMServer | None = await models.llm_server(persona)
            assert server is not None
            base_url, api_key = server.base_url, LOCAL_API_KEY
        llms.append(ChatLLM(persona.llm, base_url, api_key, seed=seed))
    return DrivenLines(personas, llms, topic, turns)
