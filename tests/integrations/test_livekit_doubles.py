"""A small LiveKit room double that records what the avatar does to the room (no server can run here).

It holds the real livekit objects wherever they work without a connection (tracks, sources, frames)
and records attribute updates, text streams and data packets. Imported by the other test_livekit_*
modules; it has no tests of its own.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from livekit import rtc

_sids = itertools.count(1)


@dataclass
class Stream:
    """One text stream the avatar opened."""

    topic: str
    attributes: dict[str, str]
    sender_identity: str | None
    chunks: list[str] = field(default_factory=list)
    closed_with: dict[str, str] | None = None
    closed: bool = False

    @property
    def text(self) -> str:
        return "".join(self.chunks)


class RecordingWriter:
    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    async def write(self, text: str) -> None:
        assert not self.stream.closed, "write after close"
        self.stream.chunks.append(text)

    async def aclose(self, *, reason: str = "", attributes: dict[str, str] | None = None) -> None:
        assert not self.stream.closed, "closed twice"
        self.stream.closed, self.stream.closed_with = True, dict(attributes or {})


class LocalPublication:
    def __init__(self, track: rtc.LocalTrack, options: rtc.TrackPublishOptions) -> None:
        self.sid = f"TR_local{next(_sids)}"
        self.track = track
        self.options = options
        self.source = options.source
        audio = options.source == rtc.TrackSource.SOURCE_MICROPHONE
        self.kind = rtc.TrackKind.KIND_AUDIO if audio else rtc.TrackKind.KIND_VIDEO
        self.subscribed = asyncio.Event()

    async def wait_for_subscription(self) -> None:
        await self.subscribed.wait()


class RecordingParticipant:
    """The local participant: records attributes, streams, data and publications."""

    def __init__(self, identity: str, room: rtc.EventEmitter[str] | None = None) -> None:
        self.identity = identity
        self.room = room
        self.kind = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        self.track_publications: dict[str, LocalPublication] = {}
        self.unpublished: list[str] = []
        self.attributes: dict[str, str] = {}
        self.attribute_updates: list[dict[str, str]] = []
        self.streams: list[Stream] = []
        self.data: list[tuple[str, bytes]] = []
        self.publications: list[LocalPublication] = []
        self.fail = False  # when True every call raises, like a room that is going away

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        if self.fail:
            raise RuntimeError("engine is closed")
        self.attribute_updates.append(dict(attributes))
        self.attributes.update(attributes)

    async def stream_text(self, **kwargs: Any) -> RecordingWriter:
        if self.fail:
            raise RuntimeError("engine is closed")
        stream = Stream(kwargs["topic"], dict(kwargs.get("attributes") or {}), kwargs.get("sender_identity"))
        self.streams.append(stream)
        return RecordingWriter(stream)

    async def publish_data(self, payload: bytes | str, *, topic: str = "", **_: Any) -> None:
        if self.fail:
            raise RuntimeError("engine is closed")
        self.data.append((topic, payload.encode() if isinstance(payload, str) else payload))

    async def publish_track(
        self, track: rtc.LocalTrack, options: rtc.TrackPublishOptions
    ) -> LocalPublication:
        publication = LocalPublication(track, options)
        self.publications.append(publication)
        self.track_publications[publication.sid] = publication
        if self.room is not None:
            self.room.emit("local_track_published", publication, track)
        return publication

    async def unpublish_track(self, sid: str) -> None:
        self.track_publications.pop(sid)
        self.unpublished.append(sid)

    def states(self) -> list[str]:
        return [u["lk.agent.state"] for u in self.attribute_updates if "lk.agent.state" in u]

    def transcriptions(self) -> list[Stream]:
        return [s for s in self.streams if s.topic == "lk.transcription"]


@dataclass
class RemotePublication:
    sid: str
    source: rtc.TrackSource.ValueType
    kind: rtc.TrackKind.ValueType
    track: Any = None  # what the track reader double plays
    subscribed: bool = True
    muted: bool = False


@dataclass
class RemoteParticipant:
    identity: str
    kind: rtc.ParticipantKind.ValueType = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
    track_publications: dict[str, RemotePublication] = field(default_factory=dict)
    sid: str = field(default_factory=lambda: f"PA_{next(_sids)}")
    state: rtc.ParticipantState.ValueType = rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE
    attributes: dict[str, str] = field(default_factory=dict)

    def microphone(self, media: Any) -> RemotePublication:
        pub = RemotePublication(
            f"TR_mic{next(_sids)}", rtc.TrackSource.SOURCE_MICROPHONE, rtc.TrackKind.KIND_AUDIO, media
        )
        self.track_publications[pub.sid] = pub
        return pub

    def camera(self, media: Any) -> RemotePublication:
        pub = RemotePublication(
            f"TR_cam{next(_sids)}", rtc.TrackSource.SOURCE_CAMERA, rtc.TrackKind.KIND_VIDEO, media
        )
        self.track_publications[pub.sid] = pub
        return pub


class RecordingRoom(rtc.EventEmitter[str]):
    """Events are emitted by the test; the avatar's calls on the room are recorded."""

    def __init__(self, identity: str = "dyad-ada", name: str = "test-room") -> None:
        super().__init__()
        self.name = name
        self.local_participant = RecordingParticipant(identity, self)
        self.remote_participants: dict[str, RemoteParticipant] = {}
        self.text_handlers: dict[str, Any] = {}
        self.connected = True

    def isconnected(self) -> bool:
        return self.connected

    def register_text_stream_handler(self, topic: str, handler: Any) -> None:
        if topic in self.text_handlers:
            raise ValueError(topic)
        self.text_handlers[topic] = handler

    def unregister_text_stream_handler(self, topic: str) -> None:
        self.text_handlers.pop(topic, None)

    def join(self, participant: RemoteParticipant) -> None:
        self.remote_participants[participant.identity] = participant  # rtc.Room keys them by identity
        self.emit("participant_connected", participant)
        for pub in participant.track_publications.values():
            self.emit("track_subscribed", pub.track, pub, participant)

    def leave(self, participant: RemoteParticipant) -> None:
        del self.remote_participants[participant.identity]
        for pub in participant.track_publications.values():
            self.emit("track_unsubscribed", pub.track, pub, participant)
        self.emit("participant_disconnected", participant)


class PlayedAudio:
    """A remote microphone: 16 kHz float audio played in real time as 20 ms rtc.AudioFrames; silence
    after it (a live microphone never stops) until the test ends it."""

    def __init__(self, samples: npt.NDArray[np.float32], rate: int = 16_000) -> None:
        self.samples = samples
        self.rate = rate
        self.ended = asyncio.Event()
        self.played_s = 0.0


class PlayedVideo:
    """A remote camera: the same RGB image at 25 fps."""

    def __init__(self, image: npt.NDArray[np.uint8]) -> None:
        self.image = image
        self.frames = 0


class ScriptedReader:
    """Reads the doubles' media instead of rtc.AudioStream / rtc.VideoStream."""

    async def audio(self, track: Any) -> AsyncIterator[rtc.AudioFrame]:
        assert isinstance(track, PlayedAudio)
        chunk = track.rate // 50
        loop = asyncio.get_running_loop()
        start = loop.time()
        for k in itertools.count():
            if track.ended.is_set():
                return
            await asyncio.sleep(max(0.0, start + k * 0.02 - loop.time()))
            piece = track.samples[k * chunk : (k + 1) * chunk]
            piece = np.pad(piece, (0, chunk - piece.size))
            pcm = (np.clip(piece, -1, 1) * 32767).astype(np.int16)
            track.played_s = (k + 1) * 0.02
            yield rtc.AudioFrame(pcm.tobytes(), track.rate, 1, chunk)

    async def video(self, track: Any) -> AsyncIterator[rtc.VideoFrame]:
        assert isinstance(track, PlayedVideo)
        h, w = track.image.shape[:2]
        while True:
            await asyncio.sleep(0.04)
            track.frames += 1
            yield rtc.VideoFrame(w, h, rtc.VideoBufferType.RGB24, track.image.tobytes())
