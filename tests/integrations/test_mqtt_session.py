"""The kiosk bridge on the real avatar: an MQTT ``say`` makes a real Session speak (real Engine, Kokoro,
renderer, real clock) and its transcript arrives on ``transcript``; and ``--transport files`` runs a
whole conversation with a recorded visitor (embedded LLM, Whisper) when the presence sensor fires."""

from __future__ import annotations

import asyncio
import contextlib
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import numpy as np
import pytest
from livekit import rtc
from mosquitto import Broker, Watcher
from scipy.signal import resample_poly
from test_livekit_doubles import RecordingRoom, RemoteParticipant, ScriptedReader
from webrtc_page import Page, connect_page

from agent.persona import Persona, load_persona
from avatar_core.config import AppSettings
from avatar_core.frames import AudioFrame
from avatar_core.tts.kokoro import KokoroTTS
from integrations.llm.local_server import free_port
from integrations.mqtt.bridge import MqttBridge, MqttSettings
from integrations.mqtt.hosts import BrowserHost, FilesHost, LiveKitHost
from integrations.mqtt.kiosk import Kiosk, KioskSession, SessionHost
from integrations.stack import AvatarStack, open_stack

CACHE = AppSettings().cache_dir
SLOW_S = 300.0  # models load and run on a shared 2-core machine: generous, never asserted


class SpeakerHost:
    """A minimal transport: the real stack (``open_stack``) with its frames played out in real time and
    the audible ones counted, as a speaker would."""

    def __init__(self) -> None:
        self.stack: AvatarStack | None = None
        self.audible_frames = 0
        self._ready = asyncio.Event()
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def bind(self, kiosk: Kiosk) -> None:
        pass

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def use_persona(self, persona: Persona) -> None:
        pass

    async def open_session(self, persona: Persona, attach: Callable[[KioskSession], None]) -> KioskSession:
        self._ready.clear()
        self._done.clear()
        self._task = asyncio.create_task(self._run(persona, attach))
        await asyncio.wait_for(self._ready.wait(), SLOW_S)
        assert self.stack is not None
        return self.stack.session

    async def _run(self, persona: Persona, attach: Callable[[KioskSession], None]) -> None:
        async with open_stack(persona) as stack:
            self.stack = stack
            attach(stack.session)
            pump = asyncio.create_task(self._pump(stack))
            await stack.session.start()
            self._ready.set()
            await self._done.wait()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _pump(self, stack: AvatarStack) -> None:
        async for frame in stack.engine.frames():
            if isinstance(frame, AudioFrame) and np.abs(frame.samples).max() > 300:
                self.audible_frames += 1

    async def close_session(self, session: KioskSession) -> None:
        self._done.set()
        if self._task is not None:
            await self._task


async def event(watcher: Watcher, prefix: str, kind: str, *, after: int = 0) -> dict[str, Any]:
    """The first ``events`` message of type ``kind``."""
    return await watcher.json_on(prefix + "events", lambda d: d["type"] == kind, after=after, timeout=SLOW_S)


@contextlib.asynccontextmanager
async def running(kiosk: Kiosk) -> AsyncIterator[None]:
    runner = asyncio.create_task(kiosk.bridge.run())
    try:
        await asyncio.wait_for(kiosk.bridge.connected.wait(), 30)
        yield
    finally:
        await kiosk.aclose()
        kiosk.bridge.stop()
        await asyncio.wait_for(runner, 60)


async def test_mqtt_say_makes_the_real_avatar_speak(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYAD_LLM__BASE_URL", "http://127.0.0.1:9/v1")  # not asked: nobody talks to it
    monkeypatch.setenv("DYAD_LLM__GREETING", "")
    monkeypatch.setenv("DYAD_APPEARANCE__VIDEO__WIDTH", "256")
    monkeypatch.setenv("DYAD_APPEARANCE__VIDEO__HEIGHT", "256")
    prefix = "dyad/real-1/"
    host = SpeakerHost()
    kiosk = Kiosk(
        MqttBridge(MqttSettings(broker=broker.url, kiosk_id="real-1")), host, load_persona(), "default"
    )
    async with Watcher(broker.port, prefix + "#") as watcher, running(kiosk):
        await watcher.publish(prefix + "cmd/session/start", b'{"id": "start"}')
        await watcher.json_on(prefix + "events", lambda d: d.get("id") == "start")
        assert host.audible_frames == 0  # no greeting
        text = "The library closes in ten minutes."
        await watcher.publish(prefix + "cmd/say", f'{{"text": "{text}", "id": "say"}}')
        await watcher.json_on(prefix + "events", lambda d: d.get("id") == "say")
        await watcher.json_on(prefix + "state", lambda d: d["state"] == "speaking")
        said = await watcher.json_on(prefix + "transcript")
        assert said["type"] == "agent_transcript" and said["final"] and not said["interrupted"]
        assert said["text"] == text and said["session"] == kiosk.session_id
        assert host.audible_frames * 0.02 > 1.0  # more than a second of the avatar's voice was played
        await watcher.json_on(prefix + "state", lambda d: d["state"] == "listening")

        assert host.stack is not None and not host.stack.session.muted
        await watcher.publish(prefix + "cmd/mute", b'{"muted": true, "id": "mute"}')
        await watcher.json_on(prefix + "events", lambda d: d.get("id") == "mute")
        assert host.stack.session.muted

        await watcher.publish(prefix + "cmd/session/end", b'{"id": "end"}')
        ended = await watcher.json_on(prefix + "events", lambda d: d["type"] == "session_ended")
        assert ended["reason"] == "command"
        await watcher.json_on(prefix + "state", lambda d: d["state"] == "idle" and d["session"] is None)


QUESTION = "What time does the library open?"


@pytest.fixture(scope="module")
def visitor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Silence, a spoken question, silence: the recorded visitor at 16 kHz."""
    tts = KokoroTTS(CACHE)
    speech = resample_poly(tts.synthesize(QUESTION, "jm_kumo"), 2, 3)
    audio = np.concatenate([np.zeros(16_000), speech, np.zeros(16_000 * 2)])
    path = tmp_path_factory.mktemp("visitor") / "visitor.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16_000)
        handle.writeframes((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())
    return path


async def test_files_transport_a_visitor_approaches(
    broker: Broker, visitor: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DYAD_LLM__MAX_TOKENS", "24")
    monkeypatch.setenv("DYAD_LLM__TEMPERATURE", "0")
    monkeypatch.setenv("DYAD_APPEARANCE__VIDEO__WIDTH", "128")
    monkeypatch.setenv("DYAD_APPEARANCE__VIDEO__HEIGHT", "128")
    prefix = "dyad/files-1/"
    host: SessionHost = FilesHost(visitor, tmp_path / "sessions")
    bridge = MqttBridge(MqttSettings(broker=broker.url, kiosk_id="files-1"))
    kiosk = Kiosk(bridge, host, load_persona("library_receptionist"), "library_receptionist")
    await host.start()
    try:
        async with Watcher(broker.port, prefix + "#") as watcher, running(kiosk):
            await watcher.publish(prefix + "cmd/presence", b'{"event": "approached"}')
            started = await watcher.json_on(prefix + "events", lambda d: d["type"] == "session_started")
            assert started["reason"] == "presence" and started["persona"] == "library_receptionist"
            ended = await event(watcher, prefix, "session_ended")
            assert ended["reason"] == "input_ended" and ended["session"] == started["session"]
            said = [m.json() for m in watcher.on(prefix + "transcript")]
            assert said[0]["type"] == "agent_transcript" and said[0]["text"].startswith(
                "Welcome to the Central"
            )
            user = [t for t in said if t["type"] == "user_transcript"]
            agent = [t for t in said[1:] if t["type"] == "agent_transcript"]
            assert len(user) == 1 and "library" in user[0]["text"].lower()
            assert len(agent) == 1 and agent[0]["text"] and agent[0]["turn"] == user[0]["turn"]
            metrics = await watcher.json_on(prefix + "metrics")
            assert metrics["turn"] == user[0]["turn"] and metrics["first_audio"] > metrics["end_of_turn"]
            states = [m.json()["state"] for m in watcher.on(prefix + "state")]
            assert {"listening", "thinking", "speaking"} <= set(states) and states[-1] == "idle"
        assert (tmp_path / "sessions" / "session-001.mp4").stat().st_size > 0
        assert (tmp_path / "sessions" / "session-001.json").is_file()
    finally:
        await host.aclose()


async def test_browser_transport_bridges_the_page_session(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DYAD_LLM__BASE_URL", "http://127.0.0.1:9/v1")  # typed and spoken turns not used
    monkeypatch.setenv("DYAD_APPEARANCE__VIDEO__WIDTH", "128")
    monkeypatch.setenv("DYAD_APPEARANCE__VIDEO__HEIGHT", "128")
    prefix = "dyad/page-1/"
    host = BrowserHost("127.0.0.1", free_port())
    bridge = MqttBridge(MqttSettings(broker=broker.url, kiosk_id="page-1"))
    kiosk = Kiosk(bridge, host, load_persona("default"), "default")
    await host.start()
    pages: list[Page] = []
    try:
        async with Watcher(broker.port, prefix + "#") as watcher, running(kiosk):
            # no page, no session: the sensor cannot open one and says why
            await watcher.publish(prefix + "cmd/presence", b'{"event": "approached", "id": "p"}')
            error = await watcher.json_on(prefix + "error", lambda d: d.get("id") == "p")
            assert "presses Start on the kiosk page" in error["reason"] and host.url in error["reason"]

            pages.append(await connect_page(host.url))
            started = await event(watcher, prefix, "session_started")
            assert started["reason"] == "page"
            greeting = await watcher.json_on(prefix + "transcript", timeout=SLOW_S)
            assert greeting["text"].startswith("Hi, I'm Ada") and greeting["session"] == started["session"]

            mark = len(watcher.messages)
            await watcher.publish(prefix + "cmd/persona", b'{"name": "library_receptionist"}')
            assert (await event(watcher, prefix, "persona_changed"))["applies"] == "next_session"
            await watcher.publish(prefix + "cmd/say", b'{"text": "Please take a ticket.", "id": "s"}')
            said = await watcher.json_on(
                prefix + "transcript", lambda d: d["turn"] > greeting["turn"], after=mark, timeout=SLOW_S
            )
            assert said["text"] == "Please take a ticket."

            await watcher.publish(prefix + "cmd/session/end", b'{"id": "e"}')
            ended = await event(watcher, prefix, "session_ended")
            assert ended["reason"] == "command" and host.page is not None and not host.page.sessions

            mark = len(watcher.messages)
            pages.append(await connect_page(host.url))  # the next visitor presses Start
            again = await event(watcher, prefix, "session_started", after=mark)
            assert again["persona"] == "library_receptionist" and again["session"] != started["session"]
            hello = await watcher.json_on(prefix + "transcript", after=mark, timeout=SLOW_S)
            assert hello["text"].startswith("Welcome to the Central Library")
            async with aiohttp.ClientSession() as http:  # the visitor presses End, as app.js does
                await http.post(host.url + "end", json={"session_id": pages[-1].session_id})
            gone = await event(watcher, prefix, "session_ended", after=mark)
            assert gone["reason"] == "page_closed"
    finally:
        for page in pages:
            await page.close()
        await host.aclose()


async def test_livekit_transport_joins_the_room_for_each_session(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the LiveKit room double (no LiveKit server runs here): each session joins the room, greets
    the person there, takes MQTT commands, and leaves; the room closing ends the session."""
    monkeypatch.setenv("DYAD_LLM__BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("DYAD_APPEARANCE__VIDEO__WIDTH", "128")
    monkeypatch.setenv("DYAD_APPEARANCE__VIDEO__HEIGHT", "128")
    rooms: list[RecordingRoom] = []
    left: list[str] = []

    @contextlib.asynccontextmanager
    async def opener(name: str, persona: Persona) -> AsyncIterator[rtc.Room]:
        room = RecordingRoom(persona.identity.livekit_identity, name)
        room.remote_participants["kiosk-screen"] = RemoteParticipant("kiosk-screen")  # the kiosk's client
        rooms.append(room)
        try:
            yield cast(rtc.Room, room)
        finally:
            left.append(name)

    prefix = "dyad/room-1/"
    host = LiveKitHost("lobby", opener=opener, reader=ScriptedReader())
    kiosk = Kiosk(
        MqttBridge(MqttSettings(broker=broker.url, kiosk_id="room-1")), host, load_persona(), "default"
    )
    try:
        async with Watcher(broker.port, prefix + "#") as watcher, running(kiosk):
            await watcher.publish(prefix + "cmd/presence", b'{"event": "approached"}')
            started = await event(watcher, prefix, "session_started")
            greeting = await watcher.json_on(prefix + "transcript", timeout=SLOW_S)
            assert greeting["text"].startswith("Hi, I'm Ada") and greeting["session"] == started["session"]
            room = rooms[0]
            assert room.name == "lobby" and len(room.local_participant.publications) == 2
            assert "speaking" in room.local_participant.states()  # the room saw it too

            mark = len(watcher.messages)
            await watcher.publish(prefix + "cmd/say", b'{"text": "Your number is 42."}')
            said = await watcher.json_on(prefix + "transcript", after=mark, timeout=SLOW_S)
            assert said["text"] == "Your number is 42."
            await watcher.publish(prefix + "cmd/mute", b'{"muted": true, "id": "m"}')
            await watcher.json_on(prefix + "events", lambda d: d.get("id") == "m")
            assert kiosk.session is not None and kiosk.session.muted

            mark = len(watcher.messages)
            room.emit("disconnected")  # the room went away
            ended = await event(watcher, prefix, "session_ended", after=mark)
            assert ended["reason"] == "room_closed" and left == ["lobby"]

            mark = len(watcher.messages)
            await watcher.publish(prefix + "cmd/presence", b'{"event": "approached"}')
            again = await event(watcher, prefix, "session_started", after=mark)
            assert again["session"] != started["session"] and len(rooms) == 2
            await watcher.publish(prefix + "cmd/presence", b'{"event": "left"}')
            gone = await event(watcher, prefix, "session_ended", after=mark)
            assert gone["reason"] == "presence" and left == ["lobby", "lobby"]
    finally:
        await host.aclose()
