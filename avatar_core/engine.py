"""The always-on avatar Engine (DESIGN §3): text in, synchronized 20 ms audio frames and video frames out.

One clock drives output: ``frames()`` yields a 20 ms audio frame every 20 ms of engine time and a video
frame at each multiple of ``1 / fps``, whether the avatar is speaking, listening or idle. ``say`` queues
speech and returns a :class:`SpeechHandle`; ``interrupt`` stops all speech at the next audio frame;
``observe_user`` feeds the listening behaviour.

Blocking work (synthesis, rendering) runs in one-thread executors, never on the event loop. With a
:class:`VirtualClock` the Engine never sleeps and waits for synthesis instead of playing silence, so
offline rendering is faster than real time and deterministic.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from avatar_core.cascade import AudioDriver, Utterance
from avatar_core.config import BehaviourConfig
from avatar_core.frames import (
    AUDIO_FRAME_S,
    AUDIO_FRAME_SAMPLES,
    AUDIO_RATE,
    AudioFrame,
    AvatarState,
    OutputFrame,
    VideoFrame,
)
from avatar_core.motion import NEUTRAL, FloatArray, clip, resample
from avatar_core.partner import PartnerFrame, partner_vector
from avatar_core.render.base import Renderer
from avatar_core.speech.features import HOP, MODEL_FPS
from avatar_core.teacher.idle import IdleLayer, compose
from avatar_core.teacher.listening import ListeningLayer
from avatar_core.text.chunking import SentenceChunker

log = logging.getLogger(__name__)

CROSSFADE_S = 0.12  # between speaking and listening motion, so an interruption never snaps the face
PARTNER_STALE_S = 1.0
_ids = itertools.count(1)


class Voice(Protocol):
    """Text -> :class:`Utterance` (blocking). Cascade mode: Kokoro + teacher; joint mode: AV-Flow."""

    fps: float

    def utterance(self, text: str) -> Utterance:
        """Synthesize one chunk of speech with its face motion."""
        ...


# ---------------------------------------------------------------------------------------------------
# Clocks
# ---------------------------------------------------------------------------------------------------


class RealClock:
    """Wall-clock pacing: frames come out when their timestamp is due."""

    realtime = True

    def __init__(self) -> None:
        self.origin: float | None = None

    def now(self) -> float:
        """Engine time in seconds since the first frame."""
        return 0.0 if self.origin is None else time.monotonic() - self.origin

    async def wait_until(self, t: float) -> None:
        """Sleep until engine time ``t``."""
        if self.origin is None:
            self.origin = time.monotonic() - t
        delay = t - self.now()
        if delay > 0:
            await asyncio.sleep(delay)


class VirtualClock:
    """No waiting: engine time is whatever frame is being produced (offline, deterministic)."""

    realtime = False

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        """Engine time of the frame being produced."""
        return self.t

    async def wait_until(self, t: float) -> None:
        """Advance instantly to ``t``."""
        self.t = t


# ---------------------------------------------------------------------------------------------------
# Speech handles
# ---------------------------------------------------------------------------------------------------


@dataclass
class _Playing:
    utterance: Utterance
    offset: int = 0  # samples already played
    started_at: float = 0.0  # engine time of its first sample
    phrase_ends: list[float] = field(default_factory=list)


class SpeechHandle:
    """One thing the avatar says. Await it to wait until it is played out or interrupted."""

    def __init__(self, text: str | None) -> None:
        self.id = f"speech_{next(_ids)}"
        self.text = text  # None while streaming in
        self.interrupted = False
        self.played_s = 0.0  # seconds of audio played so far
        self.started_at: float | None = None  # engine time of the first audio sample
        self.first_synthesis_s: float | None = None  # wall time to synthesize the first chunk
        self.first_ready_wall: float | None = None  # time.perf_counter() when the first chunk was ready
        self.started = asyncio.Event()  # set when the first sample plays
        self._chunks: asyncio.Queue[Utterance | None] = asyncio.Queue()
        self._spoken: list[str] = []  # text of fully played utterances
        self._current: _Playing | None = None
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
        if not self._done.done():
            self._done.set_result(None)


class ListeningModel(Protocol):
    """The joint model's listening mode: partner conditioning (T, P) at 40 fps -> motion (T, D) at 40 fps."""

    def listen(self, partner: FloatArray, key: str = "") -> FloatArray: ...


class ModelListening:
    """Live listening motion from the joint model, generated one block ahead.

    While the avatar is in block ``k`` (``BLOCK_S`` of video time), block ``k + 1`` is generated from the
    partner's last ``HISTORY_S`` (what follows now is assumed to stay as it is now), so reactions lag the
    partner by at most one block, about the delay of a human backchannel. A block's first frames blend
    from the last frame shown, so the face never jumps between blocks.
    """

    BLOCK_S = 0.5
    HISTORY_S = 3.0
    BLEND_FRAMES = 3

    def __init__(self, model: ListeningModel, fps: float) -> None:
        self.model = model
        self.fps = fps
        self._history: deque[tuple[float, list[float]]] = deque()
        self._blocks: dict[int, FloatArray] = {}
        self._scheduled: set[int] = set()
        self._shown: FloatArray | None = None
        self._block = -1
        self._blend_from: FloatArray | None = None
        self._into = 0  # frames shown from the current block

    def observe(self, vt: float, partner: PartnerFrame | None) -> None:
        """Record the partner's conditioning at video time ``vt``."""
        self._history.append((vt, partner_vector(partner)))
        while self._history and self._history[0][0] < vt - self.HISTORY_S - self.BLOCK_S:
            self._history.popleft()

    def next_block(self, vt: float) -> int | None:
        """The block to generate now, if it is not under way already."""
        k = int(vt // self.BLOCK_S) + 1
        return None if k in self._scheduled else k

    def schedule(self, k: int) -> list[tuple[float, list[float]]]:
        """Mark block ``k`` as under way; the partner history it is made from (on the event loop)."""
        self._scheduled.add(k)
        return list(self._history)

    def make(self, k: int, history: list[tuple[float, list[float]]]) -> tuple[int, FloatArray]:
        """Generate block ``k`` from ``history`` (blocking: runs in a worker thread)."""
        start, end = k * self.BLOCK_S - self.HISTORY_S, (k + 1) * self.BLOCK_S
        times = start + np.arange(round((end - start) * MODEL_FPS)) / MODEL_FPS  # (T,) at 40 fps
        stamps = np.array([t for t, _ in history]) if history else np.zeros(0)
        rows = np.array([v for _, v in history], np.float32).reshape(len(history), -1)
        if rows.size:
            pick = np.clip(np.searchsorted(stamps, times, side="right") - 1, 0, len(rows) - 1)
            partner = rows[pick]
        else:
            partner = np.tile(np.array(partner_vector(None), np.float32), (times.size, 1))
        motion40 = self.model.listen(partner, key=str(k))  # (T, D)
        block = resample(motion40, MODEL_FPS, self.fps)[-round(self.BLOCK_S * self.fps) :]
        return k, block

    def install(self, k: int, block: FloatArray) -> None:
        """Keep a finished block (called on the event loop)."""
        self._blocks[k] = block
        for old in [b for b in self._blocks if b < k - 1]:
            del self._blocks[old]
        self._scheduled = {b for b in self._scheduled if b >= k - 1}

    def frame(self, vt: float, fallback: FloatArray) -> FloatArray:
        """The model's listening frame at ``vt``, or ``fallback`` while its block is not ready."""
        k = int(vt // self.BLOCK_S)
        block = self._blocks.get(k)
        if block is None:
            if self._block >= 0 and self._shown is not None:
                return self._shown  # a late block: hold the last learned frame rather than jump
            self._shown = fallback
            return fallback
        i = min(len(block) - 1, round((vt - k * self.BLOCK_S) * self.fps))
        if k != self._block:  # first frame shown from this block (it may arrive late)
            self._block, self._blend_from, self._into = k, self._shown, 0
        frame: FloatArray = block[i]
        if self._blend_from is not None and self._into < self.BLEND_FRAMES:
            w = (self._into + 1) / (self.BLEND_FRAMES + 1)
            frame = w * frame + (1 - w) * self._blend_from
        self._into += 1
        self._shown = frame
        return frame

    def forget_shown(self) -> None:
        """The avatar spoke in between: the next block blends from wherever the crossfade takes it."""
        self._shown = None
        self._block = -1


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


# ---------------------------------------------------------------------------------------------------
# Engine
# ---------------------------------------------------------------------------------------------------


class Engine:
    """The avatar: always producing frames; speaks what it is told; listens to what it observes."""

    def __init__(
        self,
        voice: Voice,
        renderer: Renderer,
        behaviour: BehaviourConfig,
        *,
        fps: float = 25.0,
        clock: RealClock | VirtualClock | None = None,
        seed: int = 0,
        driver: AudioDriver | None = None,
        listener: ListeningModel | None = None,
    ) -> None:
        self.voice = voice
        self.driver = driver  # audio-driven mode (say_audio); the joint model
        # Listening from the joint model only when the persona asks for it (behaviour.listening: model).
        self._model_listening = (
            ModelListening(listener, fps) if listener is not None and behaviour.listening == "model" else None
        )
        self._listen_pool = ThreadPoolExecutor(1, thread_name_prefix="dyad-listen")
        self.renderer = renderer
        self.fps = fps
        self.clock = clock or RealClock()
        rng = np.random.default_rng(seed)
        self._idle = IdleLayer(fps, behaviour, rng)
        self._listening = ListeningLayer(fps, behaviour, rng)
        self._queue: deque[SpeechHandle] = deque()
        self._partner: PartnerFrame | None = None
        self._synth_pool = ThreadPoolExecutor(1, thread_name_prefix="dyad-synth")
        self._render_pool = ThreadPoolExecutor(1, thread_name_prefix="dyad-render")
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._paused = False
        self._layer_source = "listen"
        self._fade_from: FloatArray | None = None
        self._fade_left = 0.0
        self._last_layer: FloatArray | None = None
        self._tick = 0  # audio frames produced
        self._video_index = 0  # video frames produced
        self.state: AvatarState = "idle"
        self.on_state: Callable[[AvatarState], None] | None = None

    # -- public API ----------------------------------------------------------------------------------

    async def warm_up(self) -> None:
        """Load models and run one synthesis and one render, so the first reply starts quickly."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._synth_pool, self.voice.utterance, "Hello.")
        await loop.run_in_executor(self._render_pool, self.renderer.render, NEUTRAL)

    def say(self, text: str | AsyncIterable[str]) -> SpeechHandle:
        """Queue speech; the first chunk is kept short so audio starts early."""
        handle = SpeechHandle(text if isinstance(text, str) else None)
        handle._task = asyncio.get_running_loop().create_task(self._synthesize(handle, text))
        self._tasks.add(handle._task)
        handle._task.add_done_callback(self._tasks.discard)
        self._queue.append(handle)
        return handle

    def say_audio(
        self, source: AsyncIterable[npt.NDArray[np.int16]], text: str | None = None
    ) -> SpeechHandle:
        """Audio-driven mode: play external speech (mono int16 chunks at 24 kHz, any sizes) with face
        motion driven by the audio. The first segment is short so the face starts early; each later
        segment is driven with the audio before it as context, so motion continues across segments.
        """
        if self.driver is None:
            raise RuntimeError(
                "audio-driven speech needs the joint model (a checkpoint); "
                "this Engine was made without one (voice.mode: cascade without assets/avflow)"
            )
        handle = SpeechHandle(text)
        handle._task = asyncio.get_running_loop().create_task(self._drive(handle, source, text))
        self._tasks.add(handle._task)
        handle._task.add_done_callback(self._tasks.discard)
        self._queue.append(handle)
        return handle

    def interrupt(self) -> None:
        """Stop all queued and playing speech now."""
        self._paused = False
        while self._queue:
            self._queue.popleft().interrupt()

    def pause(self) -> None:
        """Hold playback (silence, listening face) without losing the place: the user may only be
        backchanneling. ``resume`` continues; ``interrupt`` drops it."""
        self._paused = True

    def resume(self) -> None:
        """Continue playback held by ``pause``."""
        self._paused = False

    @property
    def paused(self) -> bool:
        """Whether playback is held."""
        return self._paused

    def observe_user(self, partner: PartnerFrame) -> None:
        """The latest perception of the user, for listening behaviour."""
        self._partner = partner

    @property
    def speaking(self) -> bool:
        """Whether speech is queued or playing."""
        return any(not h.done for h in self._queue)

    async def aclose(self) -> None:
        """Stop speech, background tasks and worker threads."""
        self._closed = True
        self.interrupt()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._synth_pool.shutdown(wait=False, cancel_futures=True)
        self._render_pool.shutdown(wait=False, cancel_futures=True)
        self._listen_pool.shutdown(wait=False, cancel_futures=True)

    async def frames(self) -> AsyncIterator[OutputFrame]:
        """Audio frames every 20 ms and video frames at ``fps``, timestamped, until closed.

        There is one output stream: calling ``frames()`` again continues where the last call stopped.
        """
        loop = asyncio.get_running_loop()
        while not self._closed:
            t = self._tick * AUDIO_FRAME_SAMPLES / AUDIO_RATE  # exact ratio, comparable with video pts
            await self.clock.wait_until(t)
            samples, speech_id = await self._next_audio(t)
            self._tick += 1
            yield AudioFrame(t, samples, speech_id)
            while self._video_index / self.fps < t + AUDIO_FRAME_S - 1e-9:
                vt = self._video_index / self.fps
                motion = self._motion_at(vt)
                self._schedule_listening(vt)
                self._video_index += 1
                image = await loop.run_in_executor(self._render_pool, self.renderer.render, motion)
                yield VideoFrame(vt, image, motion, self.state)

    def _schedule_listening(self, vt: float) -> None:
        """Start generating the next listening block in its own thread (never waits for it)."""
        listening = self._model_listening
        if listening is None or self._closed:
            return
        k = listening.next_block(vt)
        if k is None:
            return
        history = listening.schedule(k)

        async def run() -> None:
            try:
                loop = asyncio.get_running_loop()
                done = await loop.run_in_executor(self._listen_pool, listening.make, k, history)
            except RuntimeError:  # the pool shut down with the engine
                return
            except Exception:
                log.exception("listening motion failed; the teacher's listening layer fills in")
                return
            listening.install(*done)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- synthesis ----------------------------------------------------------------------------------

    async def _synthesize(self, handle: SpeechHandle, source: str | AsyncIterable[str]) -> None:
        loop = asyncio.get_running_loop()
        chunker = SentenceChunker()

        async def speak(chunk: str) -> None:
            start = time.perf_counter()
            utterance = await loop.run_in_executor(self._synth_pool, self._utter, chunk)
            if handle.first_synthesis_s is None:
                handle.first_ready_wall = time.perf_counter()
                handle.first_synthesis_s = handle.first_ready_wall - start
            await handle._chunks.put(utterance)

        try:
            if isinstance(source, str):
                pieces = chunker.push(source) + chunker.flush()
            else:
                pieces = []
                async for text in source:
                    for chunk in chunker.push(text):
                        await speak(chunk)
                pieces = chunker.flush()
            for chunk in pieces:
                await speak(chunk)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("speech synthesis failed; the avatar skips this speech")
        finally:
            handle._chunks.put_nowait(None)  # the end marker

    async def _drive(
        self, handle: SpeechHandle, source: AsyncIterable[npt.NDArray[np.int16]], text: str | None
    ) -> None:
        loop = asyncio.get_running_loop()
        driven = AudioDriven(self.driver, self.fps) if self.driver is not None else None
        assert driven is not None
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
                self._synth_pool, driven.segment, audio, (text or "") if final else ""
            )
            if handle.first_synthesis_s is None:
                handle.first_ready_wall = time.perf_counter()
                handle.first_synthesis_s = handle.first_ready_wall - start
            await handle._chunks.put(utterance)

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
        except Exception:
            log.exception("audio-driven speech failed; the avatar skips the rest of it")
        finally:
            handle._chunks.put_nowait(None)  # the end marker

    def _utter(self, text: str) -> Utterance:
        start = time.perf_counter()
        utterance = self.voice.utterance(text)
        elapsed = time.perf_counter() - start
        if elapsed > utterance.duration_s:
            log.warning("synthesis slower than real time: %.2f s for %.2f s of speech", elapsed,
                        utterance.duration_s)  # fmt: skip
        return utterance

    # -- playout ------------------------------------------------------------------------------------

    async def _next_playing(self, handle: SpeechHandle, t: float) -> _Playing | Literal["wait", "end"]:
        """The handle's next utterance; "wait" if it is not synthesized yet (only on a real clock: a
        virtual clock waits for it), "end" when the handle has nothing more to say."""
        if self.clock.realtime and handle._chunks.empty():
            return "wait"
        item = await handle._chunks.get()
        if item is None:
            return "end"
        return _Playing(item, started_at=t, phrase_ends=sorted(item.phrase_ends))

    async def _next_audio(self, t: float) -> tuple[npt.NDArray[np.int16], str | None]:
        out = np.zeros(AUDIO_FRAME_SAMPLES, np.int16)
        filled = 0
        while filled < AUDIO_FRAME_SAMPLES and not self._paused:
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
                if playing == "wait":
                    break  # underrun on a real clock: silence until the next chunk is ready
                assert isinstance(playing, _Playing)
                current = handle._current = playing
            if handle.started_at is None:
                handle.started_at = t + filled / AUDIO_RATE
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
        speech_id = self._queue[0].id if filled and self._queue else None
        self._set_state(t, speaking=filled > 0)
        return out, speech_id

    def _set_state(self, t: float, speaking: bool) -> None:
        if speaking:
            state: AvatarState = "speaking"
        elif (
            self._partner is not None
            and t - self._partner.t < PARTNER_STALE_S
            and (self._partner.speaking or self._partner.face_visible)
        ):
            state = "listening"
        else:
            state = "idle"
        if state != self.state:
            self.state = state
            if self.on_state is not None:
                self.on_state(state)

    # -- motion -------------------------------------------------------------------------------------

    def _speech_layer_at(self, vt: float) -> tuple[FloatArray, bool] | None:
        """The playing utterance's motion at ``vt`` and whether it is complete (has its own idle motion)."""
        if self._paused or not self._queue or self._queue[0]._current is None:
            return None
        playing = self._queue[0]._current
        local = vt - playing.started_at
        while playing.phrase_ends and playing.phrase_ends[0] <= local:
            playing.phrase_ends.pop(0)
            self._idle.phrase_end()
        motion = playing.utterance.motion
        index = int(np.clip(round(local * playing.utterance.fps), 0, len(motion) - 1))
        frame: FloatArray = motion[index]
        return frame, playing.utterance.complete

    def _motion_at(self, vt: float) -> FloatArray:
        partner = self._partner
        if partner is not None and vt - partner.t > PARTNER_STALE_S:
            partner = None
        idle = self._idle.step()
        listening = compose(idle, self._listening.step(partner))
        speech = self._speech_layer_at(vt)
        if self._model_listening is not None:
            self._model_listening.observe(vt, partner)
            if speech is None:  # complete motion: the model's own blinks and idle motion
                listening = self._model_listening.frame(vt, listening)
            else:
                self._model_listening.forget_shown()
        source = "speak" if speech is not None else "listen"
        layer = listening
        if speech is not None:  # a complete utterance brings its own blinks and idle motion
            layer = speech[0] if speech[1] else compose(idle, speech[0])
        if source != self._layer_source and self._last_layer is not None:
            self._fade_from, self._fade_left = self._last_layer, CROSSFADE_S
            self._layer_source = source
        if self._fade_left > 0 and self._fade_from is not None:
            alpha = 1.0 - self._fade_left / CROSSFADE_S
            layer = alpha * layer + (1.0 - alpha) * self._fade_from
            self._fade_left -= 1.0 / self.fps
        self._last_layer = layer
        return clip(layer)
