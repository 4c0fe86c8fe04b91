"""Speaking: the queue of :class:`SpeechHandle`\\ s, synthesis in a worker thread, playout in 20 ms frames.

Text is cut into sentences (the first one short, so audio starts early) and each is synthesized by the
voice in one worker thread; external speech (audio-driven mode) is cut into segments and given motion
by the joint model. Both end up as :class:`~avatar_core.voice.Utterance` chunks in the handle's queue,
which :meth:`Speaker.next_audio` plays out frame by frame.

Letters in shape comments: S audio samples at 24 kHz, T video frames, D = MOTION_DIM.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from avatar_core.engine.clock import Clock
from avatar_core.frames import AUDIO_FRAME_SAMPLES, AUDIO_RATE
from avatar_core.motion import FloatArray, resample
from avatar_core.speech.features import HOP, MODEL_FPS
from avatar_core.text.chunking import SentenceChunker
from avatar_core.voice import AudioDriver, Utterance, Voice
from avatar_core.workers import compute_pool, due_in

log = logging.getLogger(__name__)

_ids = itertools.count(1)


@dataclass
class Playing:
    """The utterance being played and how far it has got."""

    utterance: Utterance
    offset: int = 0  # samples already played
    started_at: float = 0.0  # engine time of its first sample
    phrase_ends: list[float] = field(default_factory=list)  # not yet reached, seconds into the audio


class SpeechHandle:
    """One thing the avatar says. Await it to wait until it is played out or interrupted."""

    def __init__(self, text: str | None, *, held: bool = False) -> None:
        self.id = f"speech_{next(_ids)}"
        self.text = text  # None while streaming in
        # Held: made ahead (its first chunk only) and not played until released (Speaker.release).
        self.held = held
        self.interrupted = False
        self.played_s = 0.0  # seconds of audio played so far
        self.started_at: float | None = None  # engine time of the first audio sample
        # Clock time the first sample was handed out: later than started_at while the output runs
        # behind its clock, so this is when the listener could hear it.
        self.heard_at: float | None = None
        self.first_synthesis_s: float | None = None  # wall time to synthesize the first chunk
        self.first_ready_wall: float | None = None  # time.perf_counter() when the first chunk was ready
        self.started = asyncio.Event()  # set when the first sample plays
        self.error: str | None = None  # why synthesis failed, if it did (the rest is skipped)
        self._chunks: asyncio.Queue[Utterance | None] = asyncio.Queue()
        self._queued_s = 0.0  # seconds of audio in ``_chunks``
        self._wanted = asyncio.Event()  # set by playout when its next chunk is wanted (Speaker.SYNTH_LEAD_S)
        self._spoken: list[str] = []  # text of fully played utterances
        self._current: Playing | None = None
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None

    @property
    def done(self) -> bool:
        """Played out or interrupted."""
        return self._done.done()

    def interrupt(self) -> None:
        """Stop this speech at the next audio frame (or drop it if it has not started)."""
        if self.done:
            return
        self.interrupted = True
        if self._task is not None:
            self._task.cancel()
        self._finish()

    def played_text(self) -> str:
        """The words actually heard so far (what belongs in the conversation history)."""
        parts = [text for text in self._spoken if text]
        if self._current is not None:
            partial = self._current.utterance.text_spoken_by(self._current.offset / AUDIO_RATE)
            if partial:
                parts.append(partial)
        return " ".join(parts)

    async def wait_for_playout(self) -> None:
        """Wait until played out or interrupted."""
        await asyncio.shield(self._done)

    def __await__(self):  # type: ignore[no-untyped-def]
        return self.wait_for_playout().__await__()

    def _finish(self) -> None:
        self._wanted.set()
        if not self._done.done():
            self._done.set_result(None)

    def ahead_s(self) -> float:
        """Seconds of synthesized audio not played yet."""
        current = self._current
        rest = (current.utterance.audio.size - current.offset) / AUDIO_RATE if current is not None else 0.0
        return self._queued_s + rest

    async def _put(self, utterance: Utterance) -> None:
        self._queued_s += utterance.duration_s
        await self._chunks.put(utterance)

    def _ready(self, started_wall: float) -> None:
        """Record the synthesis time of the first chunk (wall clock)."""
        if self.first_synthesis_s is None:
            self.first_ready_wall = time.perf_counter()
            self.first_synthesis_s = self.first_ready_wall - started_wall


class AudioDriven:
    """Segments of external speech -> Utterances with motion from an :class:`AudioDriver`.

    Each segment is driven together with up to ``CONTEXT_S`` of the audio before it, and its first
    frames blend from the previous segment's last frame, so the face moves on without a jump.
    """

    FIRST_S = 0.3  # the first segment: short, so the face starts moving with the first audio
    NEXT_S = 1.0
    CONTEXT_S = 0.5
    BLEND_FRAMES = 3

    def __init__(self, driver: AudioDriver, fps: float) -> None:
        self.driver = driver
        self.fps = fps
        self._history = np.zeros(0, np.int16)
        self._last: FloatArray | None = None
        self._segments = 0

    @property
    def next_segment_samples(self) -> int:
        """Audio to collect before driving the next segment."""
        return int((self.FIRST_S if self._segments == 0 else self.NEXT_S) * AUDIO_RATE)

    def segment(self, audio: npt.NDArray[np.int16], text: str) -> Utterance:
        """Motion for ``audio`` (blocking: runs in the synthesis thread)."""
        self._segments += 1
        context = (
            self._history[-int(self.CONTEXT_S * AUDIO_RATE) // HOP * HOP :]
            if self._history.size
            else self._history
        )
        wave = np.concatenate([context, audio]).astype(np.float32) / 32768.0
        motion40 = self.driver.drive(wave)  # (ceil(S / 600), D)
        skip = context.size / AUDIO_RATE
        duration = audio.size / AUDIO_RATE
        frames = max(1, int(np.ceil(duration * self.fps)))
        times = skip + np.arange(frames) / self.fps  # seconds into ``wave``
        full = resample(motion40, MODEL_FPS, self.fps)  # (T', D) frame k at k / fps
        idx = np.clip(np.round(times * self.fps).astype(int), 0, len(full) - 1)
        motion = full[idx].copy()
        if self._last is not None:
            for k in range(min(self.BLEND_FRAMES, frames)):
                w = (k + 1) / (self.BLEND_FRAMES + 1)
                motion[k] = w * motion[k] + (1 - w) * self._last
        self._last = motion[-1].copy()
        self._history = np.concatenate([self._history, audio])[-AUDIO_RATE:]
        return Utterance(text, audio, motion, self.fps, [], [], complete=True)


class Speaker:
    """The speaking mode: queued speech, synthesized in one worker thread and played in 20 ms frames.

    With a clock that is not real time, playout waits for synthesis instead of playing silence.
    """

    # A reply's later chunks are synthesized when this much of its audio is left to play, not as soon as
    # the text is there: the work spreads over the reply, and a shared model serves other conversations'
    # first chunks in between (docs/design.md, "Threads"). Under load a chunk took up to 1.9 s.
    SYNTH_LEAD_S = 2.5

    def __init__(self, voice: Voice, fps: float, clock: Clock, driver: AudioDriver | None = None) -> None:
        self.voice = voice
        self.fps = fps
        self.clock = clock
        self.driver = driver
        self.paused = False
        self.underruns = 0  # silences inside a reply: its next chunk was not ready in time
        self.underrun_s = 0.0  # ... and how long they lasted together
        self._underrun = False  # the frame before was one
        self._queue: deque[SpeechHandle] = deque()
        self._held: list[SpeechHandle] = []  # made ahead, not queued for playout yet
        self._pool = compute_pool("dyad-synth")
        self._tasks: set[asyncio.Task[None]] = set()

    async def warm_up(self) -> None:
        """Load the voice's models with one synthesis."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self.voice.utterance, "Hello.")

    def say(self, text: str | AsyncIterable[str], *, held: bool = False) -> SpeechHandle:
        """Queue speech; the first chunk is kept short so audio starts early. ``held``: synthesize only
        the first chunk now and play nothing until :meth:`release` (an answer made before it is known
        to be wanted); dropped with ``handle.interrupt()``."""
        handle = SpeechHandle(text if isinstance(text, str) else None, held=held)
        self._held = [h for h in self._held if not h.done]
        self._start(handle, self._synthesize(handle, text))
        return handle

    def release(self, handle: SpeechHandle) -> None:
        """Queue a held handle for playout (after what is queued already); its synthesis goes on."""
        if handle in self._held:
            self._held.remove(handle)
        if not handle.held or handle.done:
            return
        handle.held = False
        self._queue.append(handle)
        handle._wanted.set()

    def say_audio(
        self, source: AsyncIterable[npt.NDArray[np.int16]], text: str | None = None
    ) -> SpeechHandle:
        """Queue external speech (mono int16 chunks at 24 kHz) with motion driven by the audio."""
        if self.driver is None:
            raise RuntimeError(
                "audio-driven speech needs the joint model (a checkpoint); "
                "this Engine was made without one (voice.mode: cascade without a joint-model checkpoint)"
            )
        handle = SpeechHandle(text)
        self._start(handle, self._drive(handle, AudioDriven(self.driver, self.fps), source, text))
        return handle

    def interrupt(self) -> None:
        """Stop all queued and playing speech now (held speech is its owner's to release or drop)."""
        self.paused = False
        while self._queue:
            self._queue.popleft().interrupt()

    @property
    def speaking(self) -> bool:
        """Whether speech is queued or playing."""
        return any(not h.done for h in self._queue)

    def skip(self, seconds: float) -> None:
        """The output skipped ``seconds`` of engine time: the utterance being played continues where it
        stopped, so its motion is shifted with its audio."""
        if self._queue and self._queue[0]._current is not None:
            self._queue[0]._current.started_at += seconds

    @property
    def playing(self) -> Playing | None:
        """The utterance being played, None when nothing plays or playback is paused."""
        if self.paused or not self._queue:
            return None
        return self._queue[0]._current

    async def aclose(self) -> None:
        """Stop speech, synthesis tasks and the worker thread."""
        self.interrupt()
        for handle in self._held:
            handle.interrupt()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- synthesis ----------------------------------------------------------------------------------

    def _start(self, handle: SpeechHandle, work: Coroutine[Any, Any, None]) -> None:
        handle._task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(handle._task)
        handle._task.add_done_callback(self._tasks.discard)
        (self._held if handle.held else self._queue).append(handle)

    async def _synthesize(self, handle: SpeechHandle, source: str | AsyncIterable[str]) -> None:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()

        async def read() -> None:
            """Cut the text into chunks as it comes: a streamed source (an LLM reply, with its timeouts
            and tool calls) is read at its own pace, never held up by :meth:`_when_needed`."""
            chunker = SentenceChunker()
            try:
                if isinstance(source, str):
                    for chunk in chunker.push(source, final=True):
                        pieces.put_nowait(chunk)
                else:
                    async for text in source:
                        for chunk in chunker.push(text):
                            pieces.put_nowait(chunk)
                for chunk in chunker.flush():
                    pieces.put_nowait(chunk)
            finally:
                pieces.put_nowait(None)

        reader = loop.create_task(read())
        try:
            while (chunk := await pieces.get()) is not None:
                due = await self._when_needed(handle)
                start = time.perf_counter()
                utterance = await loop.run_in_executor(self._pool, self._utter, chunk, due)
                handle._ready(start)
                await handle._put(utterance)
            await reader  # the source's own error, if it raised
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("speech synthesis failed; the avatar skips this speech")
            handle.error = f"speech synthesis failed: {exc}"
        finally:
            if not reader.done():
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            handle._chunks.put_nowait(None)  # the end marker

    async def _drive(
        self,
        handle: SpeechHandle,
        driven: AudioDriven,
        source: AsyncIterable[npt.NDArray[np.int16]],
        text: str | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        pending: list[npt.NDArray[np.int16]] = []
        size = 0

        async def emit(final: bool) -> None:
            nonlocal pending, size
            audio = np.concatenate(pending) if pending else np.zeros(0, np.int16)
            pending, size = [], 0
            if audio.size == 0:
                return
            start = time.perf_counter()
            utterance = await loop.run_in_executor(
                self._pool, driven.segment, audio, (text or "") if final else ""
            )
            handle._ready(start)
            await handle._put(utterance)

        try:
            async for chunk in source:
                samples = np.asarray(chunk, np.int16).reshape(-1)
                pending.append(samples)
                size += samples.size
                if size >= driven.next_segment_samples:
                    await emit(final=False)
            await emit(final=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("audio-driven speech failed; the avatar skips the rest of it")
            handle.error = f"audio-driven speech failed: {exc}"
        finally:
            handle._chunks.put_nowait(None)  # the end marker

    async def _when_needed(self, handle: SpeechHandle) -> float:
        """On a real clock, wait until at most :attr:`SYNTH_LEAD_S` of the handle's audio is left to play
        (playout says so, :meth:`next_audio`); returns the seconds until the next chunk's audio is needed
        (its deadline, ``workers.due_in``). A held handle waits after its first chunk until released."""
        while handle.held and not handle.done and handle.ahead_s() > 0:
            handle._wanted.clear()
            await handle._wanted.wait()
        if not self.clock.realtime:
            return 0.0
        while not handle.done and handle.ahead_s() > self.SYNTH_LEAD_S:
            handle._wanted.clear()
            await handle._wanted.wait()
        return handle.ahead_s()

    def _utter(self, text: str, due: float) -> Utterance:
        start = time.perf_counter()
        with due_in(due):
            utterance = self.voice.utterance(text)
        elapsed = time.perf_counter() - start
        if elapsed > utterance.duration_s:
            log.warning("synthesis slower than real time: %.2f s for %.2f s of speech", elapsed,
                        utterance.duration_s)  # fmt: skip
        return utterance

    # -- playout ------------------------------------------------------------------------------------

    async def _next_playing(self, handle: SpeechHandle, t: float) -> Playing | Literal["wait", "end"]:
        """The handle's next utterance; "wait" if it is not synthesized yet (only on a real clock: a
        virtual clock waits for it), "end" when the handle has nothing more to say."""
        if self.clock.realtime and handle._chunks.empty():
            return "wait"
        item = await handle._chunks.get()
        if item is None:
            return "end"
        handle._queued_s -= item.duration_s
        return Playing(item, started_at=t, phrase_ends=sorted(item.phrase_ends))

    async def next_audio(self, t: float) -> tuple[npt.NDArray[np.int16], str | None, bool]:
        """The 20 ms audio frame starting at engine time ``t`` (480,), the id of the speech it plays
        and whether it holds any speech."""
        out = np.zeros(AUDIO_FRAME_SAMPLES, np.int16)
        filled = 0
        underrun = False
        if self.paused:
            self.skip(AUDIO_FRAME_SAMPLES / AUDIO_RATE)  # the held utterance's face waits with its audio
        while filled < AUDIO_FRAME_SAMPLES and not self.paused:
            while self._queue and self._queue[0].done:
                self._queue.popleft()
            if not self._queue:
                break
            handle = self._queue[0]
            current = handle._current
            if current is None:
                playing = await self._next_playing(handle, t + filled / AUDIO_RATE)
                if playing == "end":
                    handle._finish()  # played out
                    continue
                if playing == "wait":  # underrun on a real clock: silence until the next chunk is ready
                    underrun = handle.started_at is not None
                    break
                assert isinstance(playing, Playing)
                current = handle._current = playing
            if handle.started_at is None:
                handle.started_at = t + filled / AUDIO_RATE
                handle.heard_at = self.clock.now() + filled / AUDIO_RATE
                handle.started.set()
            audio = current.utterance.audio
            take = min(AUDIO_FRAME_SAMPLES - filled, audio.size - current.offset)
            out[filled : filled + take] = audio[current.offset : current.offset + take]
            current.offset += take
            filled += take
            handle.played_s += take / AUDIO_RATE
            if current.offset >= audio.size:
                handle._spoken.append(current.utterance.text)
                handle._current = None
        if self._queue and self._queue[0].ahead_s() <= self.SYNTH_LEAD_S:
            self._queue[0]._wanted.set()  # its next chunk may be made now
        if underrun:
            self.underruns += not self._underrun
            self.underrun_s += (AUDIO_FRAME_SAMPLES - filled) / AUDIO_RATE
        self._underrun = underrun
        speech_id = self._queue[0].id if filled and self._queue else None
        return out, speech_id, filled > 0
