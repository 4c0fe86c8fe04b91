"""The always-on loop: one clock, 20 ms audio frames and video frames at ``fps``, whatever the mode.

``frames()`` yields a 20 ms audio frame every 20 ms of engine time and a video frame at each multiple of
``1 / fps``, whether the avatar is speaking, listening or idle; a video frame never runs ahead of the
audio. The parts: :mod:`~avatar_core.engine.clock` (when a frame is due),
:mod:`~avatar_core.engine.speech` (what is said), :mod:`~avatar_core.engine.listening` (the joint
model's listening) and :mod:`~avatar_core.engine.mixing` (the face).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable

import numpy as np
import numpy.typing as npt

from avatar_core.config import BehaviourConfig
from avatar_core.engine.clock import Clock, RealClock
from avatar_core.engine.listening import ListeningModel, ModelListening
from avatar_core.engine.mixing import MotionMixer
from avatar_core.engine.speech import Speaker, SpeechHandle
from avatar_core.frames import (
    AUDIO_FRAME_S,
    AUDIO_FRAME_SAMPLES,
    AUDIO_RATE,
    AudioFrame,
    AvatarState,
    OutputFrame,
    VideoFrame,
)
from avatar_core.motion import NEUTRAL, FloatArray
from avatar_core.partner import PartnerFrame
from avatar_core.render.base import Image, Renderer
from avatar_core.voice import AudioDriver, Voice
from avatar_core.workers import realtime_pool

log = logging.getLogger(__name__)

PARTNER_STALE_S = 1.0  # a perception of the user older than this no longer counts
# On a real clock a video frame is rendered this many frames before it is due (docs/design.md, "The
# Engine"): a render slowed by a busy CPU then has that much longer before the frame comes late.
RENDER_AHEAD_FRAMES = 1


class Engine:
    """The avatar: always producing frames; speaks what it is told; listens to what it observes.

    Blocking work (synthesis, rendering, the model's listening) runs in one-thread executors, never on
    the event loop. With a :class:`~avatar_core.engine.clock.VirtualClock` the Engine never sleeps and
    waits for synthesis instead of playing silence, so offline rendering is faster than real time and
    deterministic.
    """

    def __init__(
        self,
        voice: Voice,
        renderer: Renderer,
        behaviour: BehaviourConfig,
        *,
        fps: float = 25.0,
        clock: Clock | None = None,
        seed: int = 0,
        driver: AudioDriver | None = None,
        listener: ListeningModel | None = None,
    ) -> None:
        self.voice = voice
        self.driver = driver  # audio-driven mode (say_audio); the joint model
        self.renderer = renderer
        self.fps = fps
        self.clock: Clock = clock or RealClock()
        # Listening from the joint model only when the persona asks for it (behaviour.listening: model).
        self._model_listening = (
            ModelListening(listener, fps) if listener is not None and behaviour.listening == "model" else None
        )
        self._speaker = Speaker(voice, fps, self.clock, driver)
        self._mixer = MotionMixer(fps, behaviour, seed, self._model_listening)
        self._render_pool = realtime_pool("dyad-render")
        self._partner: PartnerFrame | None = None
        self._closed = False
        self._tick = 0  # index of the next audio frame
        self._video_index = 0  # index of the next video frame to compose
        # Video frames composed and rendering, not yet yielded: (time, render, motion), oldest first.
        self._rendering: deque[tuple[float, asyncio.Future[Image], FloatArray]] = deque()
        self._ahead_s = RENDER_AHEAD_FRAMES / fps if self.clock.realtime else 0.0
        self.dropped_video = 0  # video frames skipped because the output fell behind its clock
        self.skipped_s = 0.0  # engine time skipped for the same reason (speech was not: it resumed)
        self.state: AvatarState = "idle"
        self.on_state: Callable[[AvatarState], None] | None = None

    # -- public API ----------------------------------------------------------------------------------

    async def warm_up(self) -> None:
        """Load models and run one synthesis and one render, so the first reply starts quickly."""
        await self._speaker.warm_up()
        await asyncio.get_running_loop().run_in_executor(self._render_pool, self.renderer.render, NEUTRAL)

    def say(self, text: str | AsyncIterable[str], *, held: bool = False) -> SpeechHandle:
        """Queue speech; the first chunk is kept short so audio starts early.

        ``held``: an answer made before it is known to be wanted (the reply begun in the user's pause):
        only its first chunk is synthesized, nothing plays and the avatar is not speaking until
        :meth:`release`; ``handle.interrupt()`` drops it. :meth:`interrupt` leaves held speech alone.
        """
        return self._speaker.say(text, held=held)

    def release(self, handle: SpeechHandle) -> None:
        """Play a held handle (after any speech queued before it); its first chunk is ready or on its way."""
        self._speaker.release(handle)

    def say_audio(
        self, source: AsyncIterable[npt.NDArray[np.int16]], text: str | None = None
    ) -> SpeechHandle:
        """Audio-driven mode: play external speech (mono int16 chunks at 24 kHz, any sizes) with face
        motion driven by the audio. The first segment is short so the face starts early; each later
        segment is driven with the audio before it as context, so motion continues across segments.
        """
        return self._speaker.say_audio(source, text)

    def interrupt(self) -> None:
        """Stop all queued and playing speech now."""
        self._speaker.interrupt()

    def pause(self) -> None:
        """Hold playback (silence, listening face) without losing the place: the user may only be
        backchanneling. ``resume`` continues; ``interrupt`` drops it."""
        self._speaker.paused = True

    def resume(self) -> None:
        """Continue playback held by ``pause``."""
        self._speaker.paused = False

    @property
    def paused(self) -> bool:
        """Whether playback is held."""
        return self._speaker.paused

    def acknowledge(self) -> float:
        """Show that the user was heard (their turn just ended, the answer is not ready): a small nod
        and a brow raise from the next video frame; returns that frame's time."""
        vt = self._video_index / self.fps  # the next frame composed
        self._mixer.acknowledge(vt)
        return vt

    def observe_user(self, partner: PartnerFrame) -> None:
        """The latest perception of the user, for listening behaviour."""
        self._partner = partner

    @property
    def underruns(self) -> tuple[int, float]:
        """Silences inside replies so far (a chunk of speech not ready when the one before ended) and
        their total seconds: playback that is not gapless."""
        return self._speaker.underruns, round(self._speaker.underrun_s, 3)

    @property
    def speaking(self) -> bool:
        """Whether speech is queued or playing."""
        return self._speaker.speaking

    async def aclose(self) -> None:
        """Stop speech, background tasks and worker threads."""
        self._closed = True
        await self._speaker.aclose()
        if self._model_listening is not None:
            await self._model_listening.aclose()
        self._render_pool.shutdown(wait=False, cancel_futures=True)

    async def frames(self) -> AsyncIterator[OutputFrame]:
        """Audio frames every 20 ms and video frames at ``fps``, timestamped, until closed.

        There is one output stream: calling ``frames()`` again continues where the last call stopped.
        Timestamps only grow; on a real clock that the output fell behind (``Clock.resume_at``) they
        skip ahead to the present (``dropped_video``, ``skipped_s``).
        """
        while not self._closed:
            t = self._tick * AUDIO_FRAME_SAMPLES / AUDIO_RATE  # exact ratio, comparable with video pts
            resume = self.clock.resume_at(t)
            if resume > t:
                t = self._skip_to(resume)
            await self.clock.wait_until(t)
            samples, speech_id, speaking = await self._speaker.next_audio(t)
            self._set_state(t, speaking)
            self._tick += 1
            yield AudioFrame(t, samples, speech_id)
            self._compose_until(t + AUDIO_FRAME_S + self._ahead_s)
            while self._rendering and self._rendering[0][0] < t + AUDIO_FRAME_S - 1e-9:
                vt, rendering, motion = self._rendering.popleft()
                if self.clock.resume_at(vt) > vt:  # fell behind since the audio frame: too late to show
                    rendering.cancel()
                    self.dropped_video += 1
                    continue
                try:
                    image = await rendering
                except asyncio.CancelledError:
                    if self._closed and rendering.cancelled():  # the render pool was shut down
                        return
                    raise
                yield VideoFrame(vt, image, motion, self.state)

    def _compose_until(self, until: float) -> None:
        """Compose the video frames due before engine time ``until`` and start rendering each."""
        loop = asyncio.get_running_loop()
        while self._video_index / self.fps < until - 1e-9 and not self._closed:
            vt = self._video_index / self.fps
            partner = self._partner
            if partner is not None and vt - partner.t > PARTNER_STALE_S:
                partner = None
            motion = self._mixer.frame(vt, partner, self._speaker.playing)
            if self._model_listening is not None:
                self._model_listening.run_ahead(vt)
            self._video_index += 1
            rendering = loop.run_in_executor(self._render_pool, self.renderer.render, motion)
            self._rendering.append((vt, rendering, motion))

    def _skip_to(self, resume: float) -> float:
        """The output fell too far behind its clock: continue with the audio frame under way at engine
        time ``resume`` instead of bursting the missed frames. The video frames in between are dropped
        and counted; speech resumes where it stopped (no sample is lost), its face with it. Returns the
        new frame's time."""
        tick = max(self._tick, math.floor(resume * AUDIO_RATE / AUDIO_FRAME_SAMPLES))
        t = tick * AUDIO_FRAME_SAMPLES / AUDIO_RATE
        skipped = t - self._tick * AUDIO_FRAME_SAMPLES / AUDIO_RATE
        video = max(self._video_index, math.ceil(t * self.fps - 1e-9))  # the first video frame from t
        dropped = video - self._video_index
        while self._rendering and self._rendering[0][0] < t - 1e-9:  # composed, now too late
            self._rendering.popleft()[1].cancel()
            dropped += 1
        self._tick, self._video_index = tick, video
        self._speaker.skip(skipped)
        self.dropped_video += dropped
        self.skipped_s += skipped
        log.warning(
            "output %.2f s behind its clock: resuming at real time, %d video frames dropped",
            skipped, dropped,
        )  # fmt: skip
        return t

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
