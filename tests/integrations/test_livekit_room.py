"""The room transport end to end against the recording room double: the real avatar stack (Silero VAD,
Whisper, the embedded LLM, Kokoro, the renderer) hears a participant's spoken question through the
track reader, answers on its published tracks, and publishes the agent conventions; it follows people
leaving and typed questions, and leaves nothing running."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import cast

import numpy as np
import pytest
import pytest_asyncio
from livekit import rtc
from polling import waiter
from scipy.signal import resample_poly
from test_livekit_doubles import (
    PlayedAudio,
    PlayedVideo,
    RecordingRoom,
    RemoteParticipant,
    ScriptedReader,
    Stream,
)

from agent.persona import Persona, load_persona
from avatar_core.config import AppSettings
from avatar_core.tts.kokoro import KokoroTTS
from integrations.livekit.attendee import AttendPolicy
from integrations.livekit.room import RoomAvatar
from integrations.llm.local_server import LocalLLMServer
from integrations.stack import open_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")
WAIT_S = 180.0  # the machine is slow and shared; generous, never a timing assertion


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[LocalLLMServer]:
    async with LocalLLMServer() as running:
        yield running


def persona() -> Persona:
    data = load_persona("default").model_dump()
    data["llm"].update({"greeting": "Hello.", "temperature": 0.0, "max_tokens": 20})
    data["appearance"]["video"].update({"width": 128, "height": 128})
    return Persona.model_validate(data)


def question() -> np.ndarray:
    tts = KokoroTTS(AppSettings().cache_dir)
    speech = resample_poly(tts.synthesize("What time does the library open?", "jm_kumo"), 2, 3)
    return np.concatenate([np.zeros(48_000), speech, np.zeros(16_000)]).astype(np.float32)  # 3 s lead


until = waiter(WAIT_S)


class TypedMessage:
    """What RoomAvatar uses of rtc.TextStreamReader."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def read_all(self) -> str:
        return self.text


def finals(streams: list[Stream], sender: str | None) -> list[Stream]:
    # A final transcript: interim ones (the user's words while they speak) say lk.transcription_final false.
    return [
        s
        for s in streams
        if s.sender_identity == sender
        and s.closed_with is not None
        and {**s.attributes, **s.closed_with}.get("lk.transcription_final") == "true"
    ]


async def test_the_avatar_in_a_room(server: LocalLLMServer) -> None:
    room = RecordingRoom()
    local = room.local_participant
    mic = PlayedAudio(question())
    camera = PlayedVideo(np.full((96, 96, 3), 128, np.uint8))
    alice = RemoteParticipant("alice")
    alice_mic = alice.microphone(mic)
    alice.camera(camera)
    bot = RemoteParticipant("other-agent", rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)

    async with open_stack(persona(), server=server) as stack:
        reader = ScriptedReader()
        avatar = RoomAvatar(
            cast(rtc.Room, room), stack, policy=AttendPolicy("first"), reader=reader, leave_alone_after_s=1.0
        )
        running = asyncio.create_task(avatar.run())
        await until(lambda: len(local.publications) == 2, "the avatar's tracks")
        audio_pub, video_pub = local.publications
        assert audio_pub.source == rtc.TrackSource.SOURCE_MICROPHONE
        assert video_pub.source == rtc.TrackSource.SOURCE_CAMERA
        assert video_pub.options.video_encoding.max_framerate == 25
        await until(lambda: local.states() == ["idle"], "the initial state")

        room.join(bot)  # never attended, never greeted
        await asyncio.sleep(0.5)
        assert avatar.selector.current is None and local.states() == ["idle"]

        room.join(alice)
        audio_pub.subscribed.set()  # alice's client subscribes to the avatar's voice
        await until(lambda: avatar.selector.current == "alice", "attending to alice")

        def answered() -> bool:
            return len(finals(local.transcriptions(), None)) >= 2  # the greeting and the answer

        await until(answered, "the answer")
        (heard,) = [s for s in finals(local.transcriptions(), "alice") if s.closed_with is not None]
        assert "library" in heard.text.lower()
        assert heard.attributes["lk.transcription_final"] == "true"
        assert heard.attributes["lk.transcribed_track_id"] == alice_mic.sid
        greeting, answer = finals(local.transcriptions(), None)[:2]
        assert greeting.text == "Hello."
        assert answer.text and answer.attributes["lk.transcribed_track_id"] == audio_pub.sid
        final = {"lk.transcription_final": "true", "lk.transcribed_track_id": audio_pub.sid}
        assert answer.closed_with == final
        await until(lambda: local.states()[-1] == "listening", "listening again")
        states = local.states()
        assert states[:2] == ["idle", "listening"] and "thinking" in states and "speaking" in states
        assert camera.frames > 0  # alice's camera was read for the listening features

        room.text_handlers["lk.chat"](TypedMessage("Where can I print?"), "alice")
        await until(lambda: len(finals(local.transcriptions(), None)) >= 3, "the typed question's answer")
        assert finals(local.transcriptions(), "alice")[-1].text == "Where can I print?"
        room.text_handlers["lk.chat"](TypedMessage("ignored"), "other-agent")  # not a person

        assert avatar.tracks.audio_frames > 50 * 5 and avatar.tracks.video_frames > 25 * 5
        played = mic.played_s
        room.leave(alice)
        await until(lambda: avatar.selector.current is None, "alice gone")
        await asyncio.sleep(0.3)
        assert mic.played_s - played < 0.3  # her microphone is no longer read
        await asyncio.wait_for(running, WAIT_S)  # alone with another agent: it leaves by itself
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not leftover, leftover
    assert not room.text_handlers and not room._events.get("participant_connected")


async def test_reconnects_returns_and_a_final_disconnect(server: LocalLLMServer) -> None:
    """A reconnect keeps the conversation and the tracks; someone who leaves and comes back is heard
    again; the final disconnect ends ``run`` with no task or thread left behind."""
    room = RecordingRoom()
    local = room.local_participant
    alice = RemoteParticipant("alice")
    mic = PlayedAudio(np.zeros(16_000 * 60, np.float32))
    alice.microphone(mic)
    threads_before = {t.ident for t in threading.enumerate()}
    async with open_stack(persona(), server=server) as stack:
        tasks_before = {t for t in asyncio.all_tasks() if not t.done()}
        avatar = RoomAvatar(cast(rtc.Room, room), stack, reader=ScriptedReader())
        running = asyncio.create_task(avatar.run())
        await until(lambda: len(local.publications) == 2, "the avatar's tracks")
        room.join(alice)
        await until(lambda: avatar.selector.current == "alice" and mic.played_s > 0.5, "listening to alice")
        await until(lambda: "speaking" in local.states(), "the greeting")
        await until(lambda: stack.session.state == "listening", "listening after the greeting")

        # The connection drops: the room says so, publishing data fails, the avatar keeps going.
        local.fail = True
        room.emit("reconnecting")
        frames = avatar.tracks.video_frames
        await asyncio.sleep(1.0)
        assert avatar.tracks.video_frames > frames  # the camera is fed throughout
        assert stack.session.state == "listening" and not running.done()
        local.fail = False
        updates = len(local.attribute_updates)
        room.emit("reconnected")
        await until(lambda: len(local.attribute_updates) > updates, "the state published again")
        assert local.states()[-1] == "listening"
        assert len(local.publications) == 2  # the same tracks: nothing republished, nothing lost

        # Alice leaves and comes back: her microphone is read again.
        room.leave(alice)
        await until(lambda: avatar.selector.current is None, "alice gone")
        room.join(alice)
        await until(lambda: avatar.selector.current == "alice", "attending to alice again")
        heard = mic.played_s
        await until(lambda: mic.played_s > heard + 0.5, "her microphone read again")

        room.connected = False
        room.emit("disconnected", rtc.DisconnectReason.SERVER_SHUTDOWN)
        await asyncio.wait_for(running, WAIT_S)
        leftover = [t for t in asyncio.all_tasks() if not t.done() and t not in tasks_before]
        assert leftover == [asyncio.current_task()] or not leftover, leftover
    await asyncio.sleep(0.2)  # executors shut down without waiting: give their threads a moment
    extra = [t for t in threading.enumerate() if t.ident not in threads_before and t.is_alive()]
    assert not [t for t in extra if t.name.startswith("dyad")], extra
