"""LiveKit agent conventions, so stock frontends (the agents playground, the React components) show the
avatar as an agent: its state and both sides' transcriptions.

Taken from livekit-agents 1.8.9 (``livekit/agents/types.py`` and ``voice/room_io/``):

* the participant attribute ``lk.agent.state`` is ``idle | listening | thinking | speaking``; setting
  it needs the ``can_update_own_metadata`` grant;
* transcriptions are text streams on the topic ``lk.transcription``, with the attributes
  ``lk.segment_id`` (one per utterance), ``lk.transcription_final`` ("true"/"false") and
  ``lk.transcribed_track_id`` (the microphone track the words were spoken on). The user's words are sent
  on the user's behalf (``sender_identity``), one complete stream per interim and final result; the
  avatar's words go out as one delta stream per utterance, opened non-final and closed with
  ``lk.transcription_final: "true"``. Only words actually played are sent (the Session's agent
  transcripts follow playback).

Every Session event is also sent as JSON on the data topic ``dyad.events`` for custom frontends,
including ``action`` (a kiosk action declared in the persona) and ``handoff_requested`` (the user asked
for a person).

Publishing runs on one task in event order; a failure is logged and never reaches the Session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent.events import (
    AgentState,
    AgentTranscript,
    SessionEvent,
    StateChanged,
    UserTranscript,
    to_dict,
)

log = logging.getLogger(__name__)

ATTRIBUTE_AGENT_STATE = "lk.agent.state"
TOPIC_TRANSCRIPTION = "lk.transcription"
ATTRIBUTE_SEGMENT_ID = "lk.segment_id"
ATTRIBUTE_TRACK_ID = "lk.transcribed_track_id"
ATTRIBUTE_FINAL = "lk.transcription_final"
TOPIC_EVENTS = "dyad.events"
TOPIC_CHAT = "lk.chat"  # typed messages from frontends


class TextWriter(Protocol):
    """What dyad uses of ``rtc.TextStreamWriter``."""

    async def write(self, text: str) -> None: ...

    async def aclose(self, *, reason: str = "", attributes: dict[str, str] | None = None) -> None: ...


class Publisher(Protocol):
    """What dyad uses of ``rtc.LocalParticipant`` to publish state and transcripts."""

    @property
    def identity(self) -> str: ...

    async def set_attributes(self, attributes: dict[str, str]) -> None: ...

    async def stream_text(
        self,
        *,
        destination_identities: list[str] | None = None,
        topic: str = "",
        attributes: dict[str, str] | None = None,
        stream_id: str | None = None,
        reply_to_id: str | None = None,
        total_size: int | None = None,
        sender_identity: str | None = None,
    ) -> TextWriter: ...

    async def publish_data(
        self,
        payload: bytes | str,
        *,
        reliable: bool = True,
        destination_identities: list[str] = ...,
        topic: str = "",
    ) -> None: ...


class _Marker:
    """Queue item that stops the publishing task."""


_STOP = _Marker()


@dataclass(frozen=True)
class Speaker:
    """Whose words a user transcript is: their identity and microphone track (either may be unknown)."""

    identity: str | None
    track_sid: str | None


@dataclass
class _AgentSegment:
    writer: TextWriter
    sent: str


class ConventionPublisher:
    """Turns Session events into ``lk.agent.state``, ``lk.transcription`` streams and ``dyad.events``.

    ``agent_track`` gives the avatar's microphone track sid, ``user`` the attended participant when a
    user transcript is published (both are read when the message goes out).
    """

    def __init__(
        self,
        participant: Publisher,
        *,
        agent_track: Callable[[], str | None],
        user: Callable[[], Speaker],
        events: bool = True,
    ) -> None:
        self.participant = participant
        self.agent_track = agent_track
        self.user = user
        self.events = events
        self.published_state: AgentState | None = None
        self._prefix = uuid.uuid4().hex[:8]
        self._queue: asyncio.Queue[SessionEvent | _Marker | None] = asyncio.Queue()
        self._wanted_state: AgentState | None = None
        self._agent: dict[str, _AgentSegment] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self, state: AgentState | None = None) -> None:
        """Start publishing (on the running loop), with the current ``state`` first."""
        if state is not None:
            self._wanted_state = state
            self._queue.put_nowait(None)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="dyad-livekit-conventions")

    def handle(self, event: SessionEvent) -> None:
        """A Session listener: queue ``event`` for publishing."""
        if isinstance(event, StateChanged):
            self._wanted_state = event.state
        self._queue.put_nowait(event)

    def republish_state(self) -> None:
        """Send the state again (after a reconnection the server may have lost it)."""
        self.published_state = None
        self._queue.put_nowait(None)

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Publish what is queued, close open transcript streams and stop (giving up after ``timeout_s``)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._queue.put_nowait(_STOP)
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            log.warning("could not publish the last transcripts in %.0f s", timeout_s)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- publishing ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        while (event := await self._queue.get()) is not _STOP:
            await self._publish(event)
        for speech_id in list(self._agent):
            await self._close_agent(speech_id)

    async def _publish(self, event: SessionEvent | _Marker | None) -> None:
        try:
            if event is None or isinstance(event, StateChanged):
                await self._publish_state()
            elif isinstance(event, UserTranscript):
                await self._user_transcript(event)
            elif isinstance(event, AgentTranscript):
                await self._agent_transcript(event)
            if event is not None and not isinstance(event, _Marker) and self.events:
                payload = json.dumps(to_dict(event))
                await self.participant.publish_data(payload, reliable=True, topic=TOPIC_EVENTS)
        except Exception as exc:  # the room may be gone or reconnecting: never take the avatar down
            log.warning("could not publish %s to the room: %s", type(event).__name__, exc)

    async def _publish_state(self) -> None:
        state = self._wanted_state
        if state is None or state == self.published_state:
            return
        await self.participant.set_attributes({ATTRIBUTE_AGENT_STATE: state})
        self.published_state = state

    async def _user_transcript(self, event: UserTranscript) -> None:
        speaker = self.user()
        if speaker.identity is None or not event.text:
            return
        attributes = {
            ATTRIBUTE_FINAL: "true" if event.final else "false",
            ATTRIBUTE_SEGMENT_ID: f"SG_{self._prefix}_user_{event.turn}",
        }
        if speaker.track_sid:
            attributes[ATTRIBUTE_TRACK_ID] = speaker.track_sid
        writer = await self.participant.stream_text(
            topic=TOPIC_TRANSCRIPTION, attributes=attributes, sender_identity=speaker.identity
        )
        await writer.write(event.text)
        await writer.aclose()

    def _agent_attributes(self, speech_id: str, final: bool) -> dict[str, str]:
        attributes = {
            ATTRIBUTE_FINAL: "true" if final else "false",
            ATTRIBUTE_SEGMENT_ID: f"SG_{self._prefix}_{speech_id}",
        }
        track = self.agent_track()
        if track:
            attributes[ATTRIBUTE_TRACK_ID] = track
        return attributes

    async def _agent_transcript(self, event: AgentTranscript) -> None:
        segment = self._agent.get(event.speech_id)
        if segment is None and event.text:
            writer = await self.participant.stream_text(
                topic=TOPIC_TRANSCRIPTION, attributes=self._agent_attributes(event.speech_id, False)
            )
            segment = self._agent[event.speech_id] = _AgentSegment(writer, "")
        # Played text only grows (whole words, utterance by utterance), so each update is a delta.
        if (
            segment is not None
            and len(event.text) > len(segment.sent)
            and event.text.startswith(segment.sent)
        ):
            await segment.writer.write(event.text[len(segment.sent) :])
            segment.sent = event.text
        if event.final and segment is not None:
            await self._close_agent(event.speech_id)

    async def _close_agent(self, speech_id: str) -> None:
        segment = self._agent.pop(speech_id, None)
        if segment is None:
            return
        attributes = self._agent_attributes(speech_id, True)
        del attributes[ATTRIBUTE_SEGMENT_ID]  # the header carries it; the trailer adds the final flag
        await segment.writer.aclose(attributes=attributes)
