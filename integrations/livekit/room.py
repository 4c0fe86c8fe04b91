"""The room transport: one avatar (an :class:`AvatarStack`) as a participant in one connected LiveKit room.

It publishes the Engine's frames as a microphone and a camera track (:class:`AvatarTracks`), feeds the
Session with the attended participant's microphone (16 kHz) and camera (up to 10 fps) through an
:class:`AttendeeFeed`, publishes the agent conventions (:class:`ConventionPublisher`) and takes typed
messages from the ``lk.chat`` topic. It follows the room: people joining, leaving and coming back, mute
and unmute (a muted or vanished microphone is followed by a second of silence so a turn in progress
ends), active speakers, reconnection (the state attribute is set again), and the room going away.
``run`` returns when the room disconnects, when it was left empty for ``leave_alone_after_s``, or when
``stop`` is called, with every task it started ended.

The room-facing surface is small on purpose: the events it subscribes to, ``remote_participants``,
``local_participant`` (publish tracks, attributes, text streams, data) and the two stream readers of
a :class:`TrackReader`, which tests replace to play recorded media through a room double.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import numpy as np
import numpy.typing as npt
from livekit import rtc

from agent.events import SessionEvent
from avatar_core.frames import OutputFrame
from integrations.livekit.attendee import AttendeeSelector, AttendPolicy
from integrations.livekit.conventions import TOPIC_CHAT, ConventionPublisher
from integrations.livekit.listen import AttendeeFeed, TrackReader
from integrations.livekit.media import AvatarTracks
from integrations.stack import AvatarStack
from integrations.transport import USER_RATE, AvatarTransport, TransportParams

log = logging.getLogger(__name__)

SILENCE_AFTER_S = 1.2  # silence fed after the attendee's microphone stops, so their turn can end
SILENCE_CHUNK = 320  # 20 ms at 16 kHz
GREET_WAIT_S = 5.0  # the greeting waits this long for someone to subscribe to the avatar's voice
UNKNOWN_REASON = rtc.DisconnectReason.UNKNOWN_REASON


class RoomAvatar(AvatarTransport):
    """The avatar in a connected room. ``await RoomAvatar(room, stack).run()``."""

    def __init__(
        self,
        room: rtc.Room,
        stack: AvatarStack,
        *,
        policy: AttendPolicy | None = None,
        reader: TrackReader | None = None,
        greet_alone: bool = False,
        leave_alone_after_s: float | None = None,
        params: TransportParams | None = None,
    ) -> None:
        super().__init__(params=params, name="livekit")
        self.room = room
        self.greet_alone = greet_alone
        self.leave_alone_after_s = leave_alone_after_s
        self.feed = AttendeeFeed(
            room,
            on_audio=self.push_user_audio,
            on_video=self._see,
            policy=policy,
            reader=reader,
            ready=self.media_started,
            video_every_s=self.params.video_every_s,
            on_attendee=self._attendee_changed,
            on_microphone_stopped=self._fill_silence,
        )
        video = stack.persona.appearance.video
        self.tracks = AvatarTracks(video.width, video.height, video.fps)
        self.conventions = ConventionPublisher(
            room.local_participant, agent_track=lambda: self.tracks.audio_sid, user=self.feed.speaker
        )
        self._filler: asyncio.Task[None] | None = None
        self._alone: asyncio.Task[None] | None = None
        self._greeted = False
        self._stop = asyncio.Event()
        self._handlers: list[tuple[str, Any]] = []
        self.attach(stack)

    @property
    def selector(self) -> AttendeeSelector:
        """Whom the avatar attends to."""
        return self.feed.selector

    # -- lifecycle ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the room until it disconnects or :meth:`stop` is called; then leave nothing running."""
        try:
            await self.tracks.publish(self.room.local_participant)
            self.conventions.start(self.session.state)
            self.start_output()
            self.feed.start()
            self._connect_events()
            if self.greet_alone:
                self._greet()
            await self._stop.wait()
        finally:
            await self._shutdown()

    def stop(self) -> None:
        """End :meth:`run` (from any callback)."""
        self._stop.set()

    async def _shutdown(self) -> None:
        self._stop.set()
        self._disconnect_events()
        await self.feed.aclose()
        await self.aclose()
        log.info("left room %s", self.room.name)

    async def close_media(self) -> None:
        await self.conventions.aclose()
        await self.tracks.aclose()

    def publish(self, event: SessionEvent) -> None:
        self.conventions.handle(event)

    # -- room events --------------------------------------------------------------------------------

    def _connect_events(self) -> None:
        self._handlers = [
            ("participant_connected", self._presence_changed),
            ("participant_disconnected", self._presence_changed),
            ("reconnecting", self._reconnecting),
            ("reconnected", self._reconnected),
            ("disconnected", self._disconnected),
        ]
        for event, handler in self._handlers:
            self.room.on(event, handler)  # type: ignore[arg-type]
        try:
            self.room.register_text_stream_handler(TOPIC_CHAT, self._chat)
        except ValueError:
            log.warning("another handler already reads %s; typed messages are ignored", TOPIC_CHAT)

    def _disconnect_events(self) -> None:
        for event, handler in self._handlers:
            self.room.off(event, handler)  # type: ignore[arg-type]
        if self._handlers:
            with contextlib.suppress(ValueError, KeyError):
                self.room.unregister_text_stream_handler(TOPIC_CHAT)
        self._handlers = []

    def _presence_changed(self, participant: rtc.RemoteParticipant) -> None:
        """Leave a room nobody is in any more (if asked to), unless someone comes back in time."""
        if self.feed.selector.present:
            if self._alone is not None:
                self._alone.cancel()
                self._alone = None
        elif self.leave_alone_after_s is not None and self._alone is None:
            self._alone = self.tasks.spawn(self._leave_when_alone(self.leave_alone_after_s), "alone")

    async def _leave_when_alone(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        log.info("nobody came back in %.0f s: leaving", seconds)
        self.stop()

    def _reconnecting(self) -> None:
        log.warning("connection to the room lost; reconnecting")

    def _reconnected(self) -> None:
        log.info("reconnected to the room")
        self.conventions.republish_state()

    def _disconnected(self, reason: rtc.DisconnectReason.ValueType = UNKNOWN_REASON) -> None:
        log.info("disconnected from the room (%s)", rtc.DisconnectReason.Name(reason))
        self.stop()

    def _chat(self, reader: rtc.TextStreamReader, identity: str) -> None:
        if identity not in self.feed.selector.present:
            return  # only people; another agent's chatter is not a question
        self.tasks.spawn(self._typed(reader), "chat")

    async def _typed(self, reader: rtc.TextStreamReader) -> None:
        text = await reader.read_all()
        if text.strip():
            await self.session.submit_text(text)

    # -- attending ----------------------------------------------------------------------------------

    def _attendee_changed(self, identity: str | None) -> None:
        if identity is not None:
            self._greet()  # the first person to arrive is greeted

    def _greet(self) -> None:
        if not self._greeted:
            self._greeted = True
            self.tasks.spawn(self._start_session(), "greeting")

    async def _start_session(self) -> None:
        await self.media_started.wait()
        publication = self.tracks.audio_publication
        if publication is not None:  # greet once someone can hear it (or after a few seconds anyway)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(publication.wait_for_subscription(), GREET_WAIT_S)
        await self.session.start()

    # -- media --------------------------------------------------------------------------------------

    async def send_frame(self, frame: OutputFrame) -> None:
        """Every frame into the synchronizer (audio paces the pump at real time)."""
        await self.tracks.push(frame)

    async def _see(self, image: npt.NDArray[np.uint8]) -> None:
        self.push_user_video(image)  # the feed already keeps to video_every_s

    def _fill_silence(self) -> None:
        """After the attendee's microphone stops (mute, unpublish, leaving, another attendee), feed
        silence in real time for a moment so the VAD sees the end of a turn in progress."""
        if self._stop.is_set():
            return
        if self._filler is None or self._filler.done():
            self._filler = self.tasks.spawn(self._silence(), "silence")

    async def _silence(self) -> None:
        await self.media_started.wait()
        zeros = np.zeros(SILENCE_CHUNK, np.float32)
        step = SILENCE_CHUNK / USER_RATE
        fed = 0.0
        while fed < SILENCE_AFTER_S:
            await asyncio.sleep(step)
            if time.monotonic() - self.feed.last_audio < 2 * step:
                return  # audio flows again
            await self.push_user_audio(zeros)
            fed += step
