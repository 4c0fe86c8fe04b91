"""The dyad face for an existing livekit-agents app, adopted the way avatar plugins are::

    avatar = AvatarSession(persona="library_receptionist")
    await avatar.start(session, room=ctx.room)      # before session.start(...)

The app keeps its own ``AgentSession`` (its STT, LLM and whatever TTS it uses). dyad renders the face in
audio-driven mode: the TTS audio the session would have played goes to the Engine
(``Engine.say_audio``), which plays it back with face motion driven by that audio, and publishes both
as the agent's microphone and camera. While the user talks, the face listens: their microphone and
camera feed dyad's listening features (energy, pitch and pauses; smile, nods, brow raises), so the
avatar nods, smiles back and holds their gaze.

It is built on livekit-agents' public avatar seams, in process (like its local avatar plugins):

* a ``QueueAudioOutput`` becomes ``session.output.audio``; the agent resamples its TTS to 24 kHz for it;
* :class:`DyadVideoGenerator` is the ``VideoGenerator``: ``push_audio`` collects each TTS segment into
  one ``say_audio`` speech, iteration yields the Engine's frames (video always, audio while speaking)
  and an ``AudioSegmentEnd`` when a speech has played out; ``clear_buffer`` interrupts it;
* :class:`DyadAvatarRunner` does what livekit-agents' ``AvatarRunner`` does through the receiver's and
  generator's public methods only: it pushes the frames through the avatar's tracks (an
  ``AVSynchronizer``, a camera with an explicit ``VideoEncoding``: LiveKit caps small videos at 15 fps
  otherwise, published once the room is connected without waiting for a subscriber) and reports
  playback started / finished (with ``interrupted=True`` after a clear) back to the session, so
  interruptions and transcript synchronisation work as with any avatar plugin.

Tested with livekit-agents 1.8.9; it uses only names that package exports (``get_job_context``,
``voice.avatar.AudioSegmentEnd``, ``QueueAudioOutput``, ``VideoGenerator``).

The audio-driven mode is the joint model's: it needs the checkpoint
(``avatar_core/assets/avflow/avflow.pt`` or ``DYAD_MODEL``); without one ``start`` raises
:class:`AvatarError` saying so.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from livekit import rtc
from livekit.agents import get_job_context
from livekit.agents.voice.avatar import AudioReceiver, AudioSegmentEnd, QueueAudioOutput, VideoGenerator

from agent.persona import Persona, load_persona
from agent.vad import HeardVoice
from avatar_core.config import AppSettings
from avatar_core.engine import Engine, RealClock, SpeechHandle
from avatar_core.engine.clock import MAX_LAG_S
from avatar_core.frames import AUDIO_RATE, AudioFrame
from avatar_core.listening_features import ListeningFeatures
from avatar_core.partner import PartnerFrame
from avatar_core.render import close_renderer, make_renderer
from avatar_core.workers import realtime_pool
from integrations.lifecycle import TaskSet
from integrations.livekit.attendee import AttendPolicy
from integrations.livekit.listen import AttendeeFeed, TrackReader
from integrations.livekit.media import AvatarTracks, to_rtc_audio, to_rtc_video
from integrations.transport import USER_RATE

if TYPE_CHECKING:
    from livekit.agents import AgentSession

log = logging.getLogger(__name__)

MAX_VIDEO_LAG_S = MAX_LAG_S  # video frames later than this behind the engine clock are dropped, not queued


class AvatarError(RuntimeError):
    """The dyad avatar cannot start."""


async def _segment_audio(
    queue: asyncio.Queue[npt.NDArray[np.int16] | None],
) -> AsyncIterator[npt.NDArray[np.int16]]:
    """One TTS segment's audio as ``say_audio`` takes it, until the segment ends."""
    while (chunk := await queue.get()) is not None:
        yield chunk


# ---------------------------------------------------------------------------------------------------
# The VideoGenerator over the Engine
# ---------------------------------------------------------------------------------------------------


class DyadVideoGenerator(VideoGenerator):
    """livekit-agents' avatar seam over the Engine: TTS audio in, synchronized frames out.

    Each audio segment (the frames between two ``AudioSegmentEnd`` markers) becomes one
    ``Engine.say_audio`` speech. Iterating yields every video frame, the audio frames of those speeches
    (silence between them is not sent, so the runner's playback position counts speech only) and an
    ``AudioSegmentEnd`` once a speech has played out.
    """

    def __init__(self, engine: Engine, *, ready: asyncio.Event | None = None) -> None:
        self.engine = engine
        self.ready = ready  # frames start when it is set (the room is connected)
        self.started = asyncio.Event()  # set with the first frame: the engine clock runs
        self.dropped_video = 0
        self._segment: asyncio.Queue[npt.NDArray[np.int16] | None] | None = None
        self._speeches: deque[SpeechHandle] = deque()  # whose end is still to be reported
        self._resampler: rtc.AudioResampler | None = None
        self._resampler_rate = 0
        self._cleared = 0  # clears done by interrupt() that the runner's clear_buffer() repeats

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        """A TTS frame of the current segment, or its end."""
        if isinstance(frame, AudioSegmentEnd):
            self._end_segment()
            return
        samples = self._to_engine_rate(frame)
        if self._segment is None:
            self._segment = asyncio.Queue()
            self._speeches.append(self.engine.say_audio(_segment_audio(self._segment)))
        if samples.size:
            self._segment.put_nowait(samples)

    def interrupt(self) -> None:
        """Stop the speech now (the audio receiver's ``clear_buffer`` event, as it happens)."""
        self._cleared += 1
        self._clear()

    def clear_buffer(self) -> None:
        """The runner's clear, a moment after the event: already done by :meth:`interrupt` if that was
        connected; otherwise done now."""
        if self._cleared:
            self._cleared -= 1
            return
        self._clear()

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._frames()

    # -- internals ----------------------------------------------------------------------------------

    def _to_engine_rate(self, frame: rtc.AudioFrame) -> npt.NDArray[np.int16]:
        """Mono int16 at 24 kHz (the session normally resamples for us; any other rate is converted)."""
        pcm = np.frombuffer(frame.data, dtype=np.int16)
        if frame.num_channels > 1:
            pcm = pcm.reshape(-1, frame.num_channels).mean(axis=1).astype(np.int16)
        if frame.sample_rate == AUDIO_RATE:
            return pcm.copy()
        if self._resampler is None or self._resampler_rate != frame.sample_rate:
            self._resampler = rtc.AudioResampler(frame.sample_rate, AUDIO_RATE, num_channels=1)
            self._resampler_rate = frame.sample_rate
        mono = rtc.AudioFrame(pcm.tobytes(), frame.sample_rate, 1, pcm.size)
        out = [np.frombuffer(f.data, dtype=np.int16) for f in self._resampler.push(mono)]
        return np.concatenate(out) if out else np.zeros(0, np.int16)

    def _end_segment(self) -> None:
        if self._resampler is not None and self._segment is not None:
            tail = [np.frombuffer(f.data, dtype=np.int16) for f in self._resampler.flush()]
            if tail:
                self._segment.put_nowait(np.concatenate(tail))
        self._resampler = None
        if self._segment is not None:
            self._segment.put_nowait(None)
            self._segment = None

    def _clear(self) -> None:
        self._end_segment()
        while self._speeches:
            self._speeches.popleft().interrupt()  # interrupted speeches report no end: the runner does

    async def _frames(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        if self.ready is not None:
            await self.ready.wait()
        clock = self.engine.clock
        async for frame in self.engine.frames():
            self.started.set()
            if isinstance(frame, AudioFrame):
                if frame.speech_id is not None and any(s.id == frame.speech_id for s in self._speeches):
                    yield to_rtc_audio(frame.samples)
            elif clock.now() - frame.pts_s > MAX_VIDEO_LAG_S:
                self.dropped_video += 1  # behind (e.g. while the tracks were being published): catch up
            else:
                yield to_rtc_video(frame.image)
            while self._speeches and self._speeches[0].done:
                if not self._speeches.popleft().interrupted:
                    yield AudioSegmentEnd()


# ---------------------------------------------------------------------------------------------------
# The runner, publishing dyad's way
# ---------------------------------------------------------------------------------------------------


class DyadAvatarRunner:
    """What livekit-agents' ``AvatarRunner`` does, on its public seams only: the session's audio
    (a ``QueueAudioOutput``) into the generator, the generator's frames into the avatar's tracks, and
    playback started / finished (``interrupted=True`` after a clear) back to the session.

    The tracks (:class:`AvatarTracks`) carry an explicit camera encoding (LiveKit caps small videos at
    15 fps otherwise) and are published once the room is connected, without waiting for a subscriber;
    they are unpublished on close.
    """

    def __init__(
        self,
        room: rtc.Room,
        *,
        audio_recv: AudioReceiver,
        video_gen: DyadVideoGenerator,
        tracks: AvatarTracks,
        connected: asyncio.Event,
    ) -> None:
        self.room = room
        self.audio_recv = audio_recv
        self.video_gen = video_gen
        self.tracks = tracks
        self.connected = connected
        self.published = asyncio.Event()  # set once both tracks are published
        self.tasks = TaskSet("dyad-avatar")
        self._playback_position = 0.0
        self._audio_playing = False

    async def start(self) -> None:
        """Start reading the session's audio and forwarding frames."""
        await self.audio_recv.start()
        self.audio_recv.on("clear_buffer", self._on_clear_buffer)
        self.tasks.spawn(self._read_audio(), "audio-in")
        self.tasks.spawn(self._forward(), "frames-out")

    async def _publish(self) -> None:
        await self.connected.wait()
        await self.tracks.publish(self.room.local_participant)
        self.published.set()

    async def _read_audio(self) -> None:
        async for frame in self.audio_recv:
            if not self._audio_playing and isinstance(frame, rtc.AudioFrame):
                self._audio_playing = True
            await self.video_gen.push_audio(frame)

    async def _forward(self) -> None:
        async for frame in self.video_gen:
            if isinstance(frame, AudioSegmentEnd):
                if self._audio_playing:
                    self._audio_playing = False
                    position, self._playback_position = self._playback_position, 0.0
                    self._notify(self.audio_recv.notify_playback_finished(position, interrupted=False))
                continue
            if not self.published.is_set():
                await self._publish()
            await self.tracks.sync.push(frame)
            if isinstance(frame, rtc.AudioFrame):
                if self._playback_position == 0.0 and frame.duration > 0.0:
                    self._notify(self.audio_recv.notify_playback_started())
                self._playback_position += frame.duration

    def _on_clear_buffer(self) -> None:
        playing, self._audio_playing = self._audio_playing, False
        self.video_gen.clear_buffer()
        if playing:
            position, self._playback_position = self._playback_position, 0.0
            self._notify(self.audio_recv.notify_playback_finished(position, interrupted=True))

    def _notify(self, result: Coroutine[None, None, None] | None) -> None:
        """A receiver may notify synchronously or with a coroutine; never block the frames on it."""
        if result is not None:
            self.tasks.spawn(result, "notify")

    async def aclose(self) -> None:
        """Stop forwarding, unpublish the tracks (if the room is still there) and free them."""
        self.audio_recv.off("clear_buffer", self._on_clear_buffer)
        await self.audio_recv.aclose()
        await self.tasks.cancel_all()
        for publication in (self.tracks.audio_publication, self.tracks.video_publication):
            if publication is not None and self.room.isconnected():
                try:
                    await self.room.local_participant.unpublish_track(publication.sid)
                except Exception as exc:  # the room may be closing anyway
                    log.debug("could not unpublish %s: %s", publication.sid, exc)
        await self.tracks.aclose()


# ---------------------------------------------------------------------------------------------------
# The AvatarSession
# ---------------------------------------------------------------------------------------------------


class AvatarSession:
    """dyad's avatar for a livekit-agents ``AgentSession``, in the agent's own process and participant.

    It has the surface of livekit-agents' avatar plugins (``start``, ``aclose``, ``wait_for_join``,
    ``avatar_identity``, ``provider``) without deriving from their base class, which assumes a separate
    avatar participant (it would remove the agent itself from the room on close).

    ``persona``: a :class:`Persona`, a persona name or YAML path (its appearance, video size and
    behaviour are used; the app's session does the talking). ``attend``: whom the face listens to
    (``first``, ``speaker`` or ``identity:NAME``).
    """

    def __init__(
        self,
        persona: Persona | str | None = None,
        *,
        attend: AttendPolicy | str = "first",
        settings: AppSettings | None = None,
        reader: TrackReader | None = None,
    ) -> None:
        self.persona_source = persona
        self.policy = attend if isinstance(attend, AttendPolicy) else AttendPolicy.parse(attend)
        self.settings = settings or AppSettings()
        self.reader = reader
        self.persona: Persona | None = persona if isinstance(persona, Persona) else None
        self.room: rtc.Room | None = None
        self.agent_session: AgentSession[Any] | None = None
        self.engine: Engine | None = None
        self.generator: DyadVideoGenerator | None = None
        self.runner: DyadAvatarRunner | None = None
        self.audio_output: QueueAudioOutput | None = None
        self.feed: AttendeeFeed | None = None
        self._features = ListeningFeatures()
        self._voice: HeardVoice | None = None  # the user's voice as the listener hears it (persona's VAD)
        self._audio_pool = realtime_pool("dyad-avatar-listen")
        self._video_pool = realtime_pool("dyad-avatar-face")
        self._video_busy = False
        self._connected = asyncio.Event()
        self._closed = False

    @property
    def avatar_identity(self) -> str:
        """In process, the avatar is the agent's own participant."""
        room = self.room
        if room is not None and room.local_participant is not None and room.local_participant.identity:
            return room.local_participant.identity
        return self.persona.identity.livekit_identity if self.persona is not None else "dyad-avatar"

    @property
    def provider(self) -> str:
        return "dyad"

    async def start(self, agent_session: AgentSession[Any], room: rtc.Room) -> None:
        """Load the face, take over ``agent_session.output.audio`` and start listening to the user.
        Inside a job, :meth:`aclose` runs when the job shuts down."""
        self.room, self.agent_session = room, agent_session
        job = get_job_context(required=False)
        if job is not None:
            job.add_shutdown_callback(self.aclose)
        source = self.persona_source
        persona = (
            source
            if isinstance(source, Persona)
            else await asyncio.to_thread(load_persona, source, settings=self.settings)
        )
        self.persona = persona
        taking = persona.turn_taking
        self._voice = await asyncio.to_thread(HeardVoice, taking.vad_threshold, taking.min_speech_ms)
        engine = self.engine = await asyncio.to_thread(_build_engine, persona, self.settings)
        video = persona.appearance.video
        self.generator = DyadVideoGenerator(engine, ready=self._connected)
        self.audio_output = QueueAudioOutput(sample_rate=AUDIO_RATE, wait_playback_start=True)
        # Our handler first, so a clear interrupts exactly the speech the session cleared (the runner's
        # clear runs a moment later, when the next reply's audio may already be arriving).
        self.audio_output.on("clear_buffer", self.generator.interrupt)  # type: ignore[arg-type]
        self.runner = DyadAvatarRunner(
            room,
            audio_recv=self.audio_output,
            video_gen=self.generator,
            tracks=AvatarTracks(video.width, video.height, video.fps),
            connected=self._connected,
        )
        await self.runner.start()
        agent_session.output.audio = self.audio_output
        self.feed = AttendeeFeed(
            room,
            on_audio=self._hear,
            on_video=self._see,
            policy=self.policy,
            reader=self.reader,
            ready=self.generator.started,
        )
        room.on("connection_state_changed", self._room_state)
        self._room_state()  # the feed starts once the room is connected (its people are known then)
        log.info("dyad avatar started as %s (%s)", self.avatar_identity, persona.identity.display_name)

    async def wait_for_join(self, *, timeout: float | None = 30.0) -> None:
        """Wait until the avatar's camera track is published (``TimeoutError`` after ``timeout`` s)."""
        if self.runner is None:
            raise RuntimeError("AvatarSession.wait_for_join before start()")
        await asyncio.wait_for(self.runner.published.wait(), timeout)

    async def aclose(self, *_: object) -> None:
        """Stop listening and rendering; hand the audio output back (the agent goes silent)."""
        if self._closed:
            return
        self._closed = True
        room = self.room
        if room is not None:
            room.off("connection_state_changed", self._room_state)
        if self.feed is not None:
            await self.feed.aclose()
        if self.runner is not None:
            await self.runner.aclose()
        if self.engine is not None:
            await self.engine.aclose()
            await asyncio.to_thread(close_renderer, self.engine.renderer)
        session = self.agent_session
        if (
            session is not None
            and self.audio_output is not None
            and session.output.audio is self.audio_output
        ):
            session.output.audio = None
        self._audio_pool.shutdown(wait=False, cancel_futures=True)
        self._video_pool.shutdown(wait=False, cancel_futures=True)
        self.room = self.agent_session = None

    # -- listening ----------------------------------------------------------------------------------

    def _room_state(self, *_: object) -> None:
        if self.room is None or not self.room.isconnected() or self._connected.is_set():
            return
        self._connected.set()
        if self.feed is not None and not self._closed:
            self.feed.start()

    async def _hear(self, samples: npt.NDArray[np.float32]) -> None:
        engine = self.engine
        if engine is None:
            return
        end = engine.clock.now()
        loop = asyncio.get_running_loop()
        partner = await loop.run_in_executor(self._audio_pool, self._analyse, samples, end)
        engine.observe_user(partner)

    def _analyse(self, samples: npt.NDArray[np.float32], end: float) -> PartnerFrame:
        # The listener's own VAD: the agent's user_state stays "speaking" through every short pause, so
        # the face could never answer one (docs/design.md, "The dyadic scene").
        start = end - samples.size / USER_RATE
        assert self._voice is not None  # set in start(), before the feed
        self._features.push_audio(samples, start, self._voice.push(samples, start))
        return self._features.frame(end)

    async def _see(self, image: npt.NDArray[np.uint8]) -> None:
        engine = self.engine
        if engine is None or self._video_busy:
            return
        self._video_busy = True
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._video_pool, self._features.push_video, image, engine.clock.now())
        except Exception as exc:
            log.warning("face analysis failed: %s", exc)
        finally:
            self._video_busy = False


def _build_engine(persona: Persona, settings: AppSettings) -> Engine:
    """The Engine in audio-driven mode (blocking: loads the joint model and the renderer, runs each once)."""
    from avatar_core.joint import JointVoice
    from avatar_core.model.inference import JointModel, ModelMissingError
    from avatar_core.motion import NEUTRAL

    try:
        model = JointModel.from_settings(settings)
    except ModelMissingError as exc:
        raise AvatarError(
            f"the dyad avatar animates the app's TTS with the joint model's audio-driven mode: {exc}"
        ) from None
    # In its own process, so that frames never wait for the GIL.
    renderer = make_renderer(persona.appearance, process=settings.render_process)
    renderer.render(NEUTRAL)
    model.drive(np.zeros(AUDIO_RATE // 2, np.float32))  # the first inference pays for setup
    fps = persona.appearance.video.fps
    voice = JointVoice(persona.voice, fps, model)
    return Engine(voice, renderer, persona.behaviour, fps=fps, clock=RealClock(), driver=model)
