"""The attended participant's media, followed through a room: their microphone as 16 kHz mono float32
(whatever rate and channels the track delivers) and their camera as RGB frames (at most every
``video_every_s``), handed to callbacks.

:class:`AttendeeFeed` keeps an :class:`AttendeeSelector` up to date from the room's events (joins,
leaves, active speakers), reads only the attendee's microphone and camera tracks, switches when the
attendee changes, and says when their microphone stops (muted, unpublished, gone) so a turn in progress
can end. The room transport feeds a Session with it; the drop-in AvatarSession feeds only the
listening features.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from livekit import rtc

from integrations.livekit.attendee import AttendeeSelector, AttendPolicy
from integrations.livekit.conventions import Speaker
from integrations.livekit.media import user_image
from integrations.transport import USER_RATE, TransportParams, UserAudio

log = logging.getLogger(__name__)


class TrackReader(Protocol):
    """Opens the media of a subscribed remote track."""

    def audio(self, track: rtc.Track) -> AsyncIterator[rtc.AudioFrame]:
        """16 kHz mono frames of an audio track until it ends."""
        ...

    def video(self, track: rtc.Track) -> AsyncIterator[rtc.VideoFrame]:
        """The newest frames of a video track (older ones dropped) until it ends."""
        ...


class LiveKitReader:
    """Reads tracks with ``rtc.AudioStream`` (resampled natively to 16 kHz mono) and ``rtc.VideoStream``."""

    async def audio(self, track: rtc.Track) -> AsyncIterator[rtc.AudioFrame]:
        stream = rtc.AudioStream(track, sample_rate=USER_RATE, num_channels=1, frame_size_ms=20)
        try:
            async for event in stream:
                yield event.frame
        finally:
            await stream.aclose()

    async def video(self, track: rtc.Track) -> AsyncIterator[rtc.VideoFrame]:
        stream = rtc.VideoStream(track, capacity=1, format=rtc.VideoBufferType.RGB24)
        try:
            async for event in stream:
                yield event.frame
        finally:
            await stream.aclose()


AudioSink = Callable[[npt.NDArray[np.float32]], Awaitable[None]]
VideoSink = Callable[[npt.NDArray[np.uint8]], Awaitable[None]]


class AttendeeFeed:
    """The attendee's microphone and camera, followed through the room, into ``on_audio``/``on_video``."""

    def __init__(
        self,
        room: rtc.Room,
        *,
        on_audio: AudioSink,
        on_video: VideoSink,
        policy: AttendPolicy | None = None,
        reader: TrackReader | None = None,
        ready: asyncio.Event | None = None,
        on_attendee: Callable[[str | None], None] | None = None,
        on_microphone_stopped: Callable[[], None] | None = None,
        video_every_s: float = TransportParams.video_every_s,
    ) -> None:
        self.room = room
        self.selector = AttendeeSelector(policy)
        self.reader: TrackReader = reader or LiveKitReader()
        self.on_audio = on_audio
        self.on_video = on_video
        self.ready = ready
        self.on_attendee = on_attendee
        self.on_microphone_stopped = on_microphone_stopped
        self.video_every_s = video_every_s
        self.last_audio = 0.0  # time.monotonic() of the attendee's last audio frame
        self._readers: dict[str, asyncio.Task[None]] = {}  # remote track sid -> its reader
        self._handlers: list[tuple[str, Any]] = []
        self._closed = False

    def start(self) -> None:
        """Follow the room from now on, starting with the people already in it."""
        self._handlers = [
            ("participant_connected", self._participant_connected),
            ("participant_disconnected", self._participant_disconnected),
            ("track_subscribed", self._track_subscribed),
            ("track_unsubscribed", self._track_unsubscribed),
            ("track_muted", self._track_muted),
            ("active_speakers_changed", self._active_speakers),
        ]
        for event, handler in self._handlers:
            self.room.on(event, handler)  # type: ignore[arg-type]
        for participant in list(self.room.remote_participants.values()):
            self._participant_connected(participant)

    async def aclose(self) -> None:
        """Stop following the room and reading tracks."""
        self._closed = True
        for event, handler in self._handlers:
            self.room.off(event, handler)  # type: ignore[arg-type]
        self._handlers = []
        readers = list(self._readers.values())
        self._readers.clear()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

    def speaker(self) -> Speaker:
        """The attendee and their microphone track, as transcripts name them."""
        identity = self.selector.current
        participant = self.participant(identity)
        track = None
        if participant is not None:
            for publication in participant.track_publications.values():
                if publication.source == rtc.TrackSource.SOURCE_MICROPHONE:
                    track = publication.sid
        return Speaker(identity, track)

    def participant(self, identity: str | None) -> rtc.RemoteParticipant | None:
        """The remote participant with this identity, if present."""
        if identity is None:
            return None
        for participant in self.room.remote_participants.values():
            if participant.identity == identity:
                return participant
        return None

    # -- room events --------------------------------------------------------------------------------

    def _participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        log.info("%s joined (%s)", participant.identity, rtc.ParticipantKind.Name(participant.kind))
        if self.selector.joined(participant.identity, participant.kind):
            self._attend()

    def _participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        log.info("%s left", participant.identity)
        if self.selector.left(participant.identity):
            self._attend()

    def _active_speakers(self, speakers: list[rtc.Participant]) -> None:
        if self.selector.speaking([p.identity for p in speakers]):
            self._attend()

    def _track_subscribed(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if participant.identity == self.selector.current:
            self._read(track, publication)

    def _track_unsubscribed(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        task = self._readers.pop(publication.sid, None)
        if task is not None:
            task.cancel()

    def _track_muted(self, participant: rtc.Participant, publication: rtc.TrackPublication) -> None:
        if participant.identity == self.selector.current and publication.kind == rtc.TrackKind.KIND_AUDIO:
            log.info("%s muted their microphone", participant.identity)
            self._microphone_stopped()

    # -- reading ------------------------------------------------------------------------------------

    def _attend(self) -> None:
        identity = self.selector.current
        log.info("attending to %s", identity or "nobody")
        for task in self._readers.values():
            task.cancel()
        self._readers.clear()
        self._microphone_stopped()
        participant = self.participant(identity)
        if participant is not None:
            for publication in participant.track_publications.values():
                if publication.subscribed and publication.track is not None:
                    self._read(publication.track, publication)
        if self.on_attendee is not None:
            self.on_attendee(identity)

    def _read(self, track: rtc.Track, publication: rtc.RemoteTrackPublication) -> None:
        if self._closed or publication.sid in self._readers:
            return
        if publication.source == rtc.TrackSource.SOURCE_MICROPHONE:
            coro = self._read_audio(track)
        elif publication.source == rtc.TrackSource.SOURCE_CAMERA:
            coro = self._read_video(track)
        else:
            return  # screen shares are not the person
        task = asyncio.get_running_loop().create_task(coro, name=f"dyad-livekit-read-{publication.sid}")
        self._readers[publication.sid] = task
        sid = publication.sid
        task.add_done_callback(lambda done: self._reader_done(sid, done))

    def _reader_done(self, sid: str, task: asyncio.Task[None]) -> None:
        if self._readers.get(sid) is task:
            del self._readers[sid]
        if not task.cancelled() and task.exception() is not None:
            log.error("reading track %s failed", sid, exc_info=task.exception())

    def _microphone_stopped(self) -> None:
        if not self._closed and self.on_microphone_stopped is not None:
            self.on_microphone_stopped()

    async def _read_audio(self, track: rtc.Track) -> None:
        if self.ready is not None:
            await self.ready.wait()
        try:
            user_audio = UserAudio()
            async for frame in self.reader.audio(track):
                pcm = np.frombuffer(frame.data, dtype=np.int16)
                samples = user_audio.push_pcm(pcm, frame.sample_rate, frame.num_channels)
                if samples.size:
                    self.last_audio = time.monotonic()
                    await self.on_audio(samples)
        finally:
            self._microphone_stopped()

    async def _read_video(self, track: rtc.Track) -> None:
        if self.ready is not None:
            await self.ready.wait()
        last = -self.video_every_s
        async for frame in self.reader.video(track):
            now = time.monotonic()
            if now - last < self.video_every_s:
                continue  # always drain the stream; analyse at most every video_every_s
            last = now
            try:
                image = user_image(frame)
            except ValueError as exc:
                log.warning("skipping a camera frame: %s", exc)
                continue
            await self.on_video(image)
