"""What every way into a conversation does, written once: the transport base.

A transport joins one avatar (an :class:`~integrations.stack.AvatarStack`) to the outside: a LiveKit
room (``integrations/livekit/room.py``), a browser tab (``integrations/webrtc/server.py``). In the
manner of pipecat's ``BaseTransport`` and livekit-agents' ``RoomIO``, :class:`AvatarTransport` owns

* the output pump: the one consumer of ``engine.frames()``, handing each frame to :meth:`send_frame`
  (``media_started`` is set with the first: the engine clock runs);
* user audio in: any rate and channel count, resampled once to :data:`USER_RATE` mono float32 by a
  :class:`UserAudio` and pushed to the Session stamped with the engine clock (which feeds the VAD and
  the listening features);
* user video in: at most one camera frame every ``video_every_s``, analysed in the background;
* event publishing: every Session event goes to :meth:`publish` (state, transcripts, metrics, errors);
* graceful close: :meth:`aclose` stops the transport's tasks, closes the Session while interrupting
  speech (giving up after ``close_timeout_s``: some libraries swallow cancellation) and then calls
  :meth:`close_media`.

A transport implements :meth:`send_frame`, :meth:`publish` and :meth:`close_media`, and reads its
user media into :meth:`push_user_audio` / :meth:`push_user_video`. Commands
stop on SIGINT/SIGTERM through :func:`integrations.lifecycle.on_stop_signals`.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt

from agent.events import SessionEvent
from agent.session import SAMPLE_RATE, Session
from avatar_core.engine import Engine
from avatar_core.frames import OutputFrame
from integrations.lifecycle import TaskSet, close_session
from integrations.stack import AvatarStack

log = logging.getLogger(__name__)

USER_RATE = SAMPLE_RATE  # user audio as the Session takes it: 16 kHz mono float32


@dataclass(frozen=True)
class TransportParams:
    """How a transport treats user media and closing."""

    video_every_s: float = 0.1  # face analysis at up to 10 fps
    close_timeout_s: float = 30.0  # the Session must close within this, or is given up on


# ---------------------------------------------------------------------------------------------------
# User audio
# ---------------------------------------------------------------------------------------------------


class UserAudio:
    """User audio of any rate and channel count -> :data:`USER_RATE` mono float32 in [-1, 1].

    One resampler per stream (it keeps state between chunks); 16 kHz mono input passes through
    unchanged but for the conversion to float.
    """

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=USER_RATE)

    def push_pcm(self, pcm: npt.NDArray[np.int16], rate: int, channels: int) -> npt.NDArray[np.float32]:
        """Interleaved int16 samples (S * channels,) at ``rate`` -> (S',) float32 at 16 kHz mono
        (channels averaged)."""
        mono = pcm.reshape(-1, channels).mean(axis=1) if channels > 1 else pcm
        samples = (mono / 32768.0).astype(np.float32)
        if rate == USER_RATE:
            return samples
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate
        return self.push_frame(frame)

    def push_frame(self, frame: av.AudioFrame) -> npt.NDArray[np.float32]:
        """A decoded audio frame (any format) -> (S',) float32 at 16 kHz mono."""
        chunks = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        if not chunks:
            return np.zeros(0, np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------------
# The base
# ---------------------------------------------------------------------------------------------------


class AvatarTransport(abc.ABC):
    """One avatar stack joined to one way in; see the module docstring for what it owns.

    ``stack`` may be attached later (:meth:`attach`) when the transport exists before its avatar is
    built (a browser tab takes its offer while the models load).
    """

    def __init__(
        self, stack: AvatarStack | None = None, params: TransportParams | None = None, *, name: str
    ) -> None:
        self.params = params or TransportParams()
        self.name = name
        self.stack: AvatarStack | None = None
        self.media_started = asyncio.Event()  # set with the first output frame: the engine clock runs
        self.tasks = TaskSet(f"dyad-{name}")
        self._push_lock = asyncio.Lock()
        self._last_video = -float("inf")
        self._closed = False
        if stack is not None:
            self.attach(stack)

    def attach(self, stack: AvatarStack) -> None:
        """Serve ``stack``: its Session's events go to :meth:`publish` from now on."""
        self.stack = stack
        stack.session.on(self.publish)

    def _attached(self) -> AvatarStack:
        if self.stack is None:
            raise RuntimeError(f"the {self.name} transport has no avatar yet")
        return self.stack

    @property
    def session(self) -> Session:
        """The Session being served."""
        return self._attached().session

    @property
    def engine(self) -> Engine:
        """The Engine being served."""
        return self._attached().engine

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` has begun."""
        return self._closed

    # -- output -------------------------------------------------------------------------------------

    def start_output(self) -> None:
        """Start the output pump."""
        self.tasks.spawn(self._pump(), "engine")

    async def _pump(self) -> None:
        async for frame in self.engine.frames():
            await self.send_frame(frame)
            if not self.media_started.is_set():
                self.media_started.set()

    @abc.abstractmethod
    async def send_frame(self, frame: OutputFrame) -> None:
        """Deliver one Engine frame (20 ms of 24 kHz audio, or one video frame)."""

    @abc.abstractmethod
    def publish(self, event: SessionEvent) -> None:
        """A Session event for the other side (state, transcripts, metrics, errors)."""

    # -- input --------------------------------------------------------------------------------------

    async def push_user_audio(self, samples: npt.NDArray[np.float32]) -> None:
        """16 kHz mono float32 that ends now, to the Session (in arrival order)."""
        if samples.size == 0:
            return
        clock = self.engine.clock
        async with self._push_lock:
            await self.session.push_audio(samples, max(0.0, clock.now() - samples.size / USER_RATE))

    def wants_user_video(self) -> bool:
        """Whether a camera frame now would be analysed (at most one every ``video_every_s``)."""
        return time.monotonic() - self._last_video >= self.params.video_every_s

    def push_user_video(self, image: npt.NDArray[np.uint8]) -> None:
        """Analyse one RGB camera frame (H, W, 3) in the background."""
        self._last_video = time.monotonic()
        self.tasks.spawn(self.session.push_video(image, self.engine.clock.now()), "face")

    # -- closing ------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop this transport's tasks, close the Session (interrupting speech), then the media."""
        if self._closed:
            return
        self._closed = True
        await self.tasks.cancel_all()
        if self.stack is not None:
            await close_session(self.stack.session, self.stack.engine, self.params.close_timeout_s)
        await self.close_media()

    @abc.abstractmethod
    async def close_media(self) -> None:
        """Free the transport's own media (tracks, connections)."""
