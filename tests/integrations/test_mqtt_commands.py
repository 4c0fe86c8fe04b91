"""The kiosk bridge against a real Mosquitto broker: every command round trip, every published topic,
and malformed commands answered on ``error`` while the kiosk keeps running. The session side is a
double that emits the real ``agent/events.py`` events (test_mqtt_session.py uses the real Session)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest_asyncio
from mosquitto import WAIT_S, Broker, FakeHost, FakeSession, Watcher

from agent.events import ErrorEvent, TurnMetrics, UserTranscript
from agent.persona import load_persona
from integrations.mqtt.bridge import MqttBridge, MqttSettings
from integrations.mqtt.kiosk import Kiosk
from integrations.mqtt.messages import MAX_PAYLOAD_BYTES, parse_command

KIOSK = "lobby-1"
P = f"dyad/{KIOSK}/"


@dataclass
class Rig:
    kiosk: Kiosk
    bridge: MqttBridge
    host: FakeHost
    watcher: Watcher

    @property
    def session(self) -> FakeSession:
        assert isinstance(self.kiosk.session, FakeSession)
        return self.kiosk.session

    async def send(self, command: str, payload: bytes | str | dict, *, retain: bool = False) -> int:  # type: ignore[type-arg]
        """Publish a command; returns the index of the next message the watcher will record."""
        mark = len(self.watcher.messages)
        data = json.dumps(payload) if isinstance(payload, dict) else payload
        await self.watcher.publish(P + "cmd/" + command, data, retain=retain)
        return mark

    async def done(self, command: str, command_id: str, after: int) -> dict:  # type: ignore[type-arg]
        return await self.watcher.json_on(
            P + "events", lambda d: d.get("type") == "command_done" and d.get("id") == command_id, after=after
        )

    async def error(self, after: int) -> dict:  # type: ignore[type-arg]
        return await self.watcher.json_on(P + "error", after=after)

    async def state(self, state: str, after: int = 0) -> dict:  # type: ignore[type-arg]
        return await self.watcher.json_on(P + "state", lambda d: d["state"] == state, after=after)


@pytest_asyncio.fixture
async def rig(broker: Broker) -> AsyncIterator[Rig]:
    settings = MqttSettings(broker=broker.url, kiosk_id=KIOSK)
    bridge = MqttBridge(settings)
    host = FakeHost()
    kiosk = Kiosk(bridge, host, load_persona("default"), "default")
    runner = asyncio.create_task(bridge.run())
    try:
        async with Watcher(broker.port, P + "#") as watcher:
            await asyncio.wait_for(bridge.connected.wait(), WAIT_S)
            await watcher.wait_for(lambda m: m.topic == P + "status" and m.text == "online")
            yield Rig(kiosk, bridge, host, watcher)
            await kiosk.aclose()
            bridge.stop()
            await asyncio.wait_for(runner, WAIT_S)
            await watcher.wait_for(lambda m: m.topic == P + "status" and m.text == "offline")
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


def transcripts(watcher: Watcher, after: int = 0) -> list[dict]:  # type: ignore[type-arg]
    return [m.json() for m in watcher.messages[after:] if m.topic == P + "transcript"]


async def test_retained_status_and_state_on_connect(rig: Rig, broker: Broker) -> None:
    async with Watcher(broker.port, P + "#") as late:  # subscribes after the kiosk published
        status = await late.wait_for(lambda m: m.topic == P + "status")
        state = await late.wait_for(lambda m: m.topic == P + "state")
    assert status.retain and status.text == "online"
    assert state.retain
    assert state.json() == {
        "state": "idle", "since": state.json()["since"], "session": None, "persona": "default", "muted": False
    }  # fmt: skip


async def test_session_start_say_and_end(rig: Rig) -> None:
    mark = await rig.send("session/start", {"id": "s1"})
    started = await rig.watcher.json_on(P + "events", lambda d: d["type"] == "session_started", after=mark)
    assert started["reason"] == "command" and started["persona"] == "default" and started["session"]
    await rig.done("session/start", "s1", mark)
    greeting = await rig.watcher.json_on(P + "transcript", after=mark)
    assert (
        greeting["type"] == "agent_transcript" and greeting["text"] == "Hi, I'm Ada. What can I do for you?"
    )
    assert greeting["final"] and greeting["session"] == started["session"] and greeting["kiosk"] == KIOSK
    state = await rig.state("listening", mark)
    assert state["session"] == started["session"]

    mark = await rig.send("say", {"text": "  We close in ten minutes.  ", "id": "s2"})
    await rig.done("say", "s2", mark)
    said = transcripts(rig.watcher, mark)
    assert [t["text"] for t in said] == ["We close in ten minutes."]
    assert rig.session.calls[-1] == ("say", "We close in ten minutes.")

    session = rig.session
    mark = await rig.send("session/end", {"id": "s3"})
    ended = await rig.watcher.json_on(P + "events", lambda d: d["type"] == "session_ended", after=mark)
    assert ended["reason"] == "command" and ended["session"] == started["session"]
    await rig.done("session/end", "s3", mark)
    await rig.watcher.json_on(
        P + "state", lambda d: d["state"] == "idle" and d["session"] is None, after=mark
    )
    assert session.calls[-1] == ("aclose",) and rig.kiosk.session is None

    # seq numbers every message once, in order
    seqs = [m.json()["seq"] for m in rig.watcher.messages if m.topic in (P + "events", P + "transcript")]
    assert seqs == sorted(set(seqs))


async def test_session_start_without_greeting_and_twice(rig: Rig) -> None:
    mark = await rig.send("session/start", {"greet": False, "id": "q"})
    await rig.done("session/start", "q", mark)
    assert transcripts(rig.watcher, mark) == []
    assert rig.session.persona.llm.greeting == ""
    mark = await rig.send("session/start", {"id": "again"})
    error = await rig.error(mark)
    assert error["error"] == "failed" and "already running" in error["reason"] and error["id"] == "again"
    assert error["topic"] == P + "cmd/session/start"


async def test_presence_approached_greets_and_left_ends(rig: Rig) -> None:
    mark = await rig.send("presence", {"event": "approached", "id": "p1"})
    started = await rig.watcher.json_on(P + "events", lambda d: d["type"] == "session_started", after=mark)
    assert started["reason"] == "presence"
    await rig.done("presence", "p1", mark)
    assert transcripts(rig.watcher, mark)[0]["text"].startswith("Hi, I'm Ada")

    mark = await rig.send("presence", {"event": "approached", "id": "p2"})  # the sensor fires again
    await rig.done("presence", "p2", mark)
    assert len(rig.host.sessions) == 1

    mark = await rig.send("presence", {"event": "left", "id": "p3"})
    ended = await rig.watcher.json_on(P + "events", lambda d: d["type"] == "session_ended", after=mark)
    assert ended["reason"] == "presence" and ended["session"] == started["session"]
    await rig.done("presence", "p3", mark)
    assert rig.kiosk.session is None and rig.host.sessions[0].calls[-1] == ("aclose",)


async def test_persona_switch_applies_to_the_next_session(rig: Rig) -> None:
    mark = await rig.send("session/start", {"id": "a"})
    await rig.done("session/start", "a", mark)
    mark = await rig.send("persona", {"name": "library_receptionist", "id": "b"})
    changed = await rig.watcher.json_on(P + "events", lambda d: d["type"] == "persona_changed", after=mark)
    assert changed["persona"] == "library_receptionist" and changed["display_name"] == "Robin"
    assert changed["applies"] == "next_session"
    await rig.done("persona", "b", mark)
    assert rig.session.persona.identity.display_name == "Ada"  # the running session keeps its persona

    mark = await rig.send("session/end", {"id": "c"})
    await rig.done("session/end", "c", mark)
    mark = await rig.send("session/start", {"id": "d"})
    started = await rig.watcher.json_on(P + "events", lambda d: d["type"] == "session_started", after=mark)
    assert started["persona"] == "library_receptionist"
    await rig.done("session/start", "d", mark)
    assert rig.session.persona.identity.display_name == "Robin"
    assert transcripts(rig.watcher, mark)[0]["text"].startswith("Welcome to the Central Library")
    assert (await rig.state("listening", mark))["persona"] == "library_receptionist"

    mark = await rig.send("session/end", {})
    await rig.watcher.json_on(P + "events", lambda d: d["type"] == "session_ended", after=mark)
    mark = await rig.send("persona", {"name": "clinic_checkin"})
    changed = await rig.watcher.json_on(P + "events", lambda d: d["type"] == "persona_changed", after=mark)
    assert changed["applies"] == "now" and changed["display_name"] == "Sam"

    mark = await rig.send("persona", {"name": "nobody", "id": "e"})
    error = await rig.error(mark)
    assert (
        error["error"] == "failed" and "no persona named 'nobody'" in error["reason"] and error["id"] == "e"
    )
    assert rig.kiosk.persona_name == "clinic_checkin"


async def test_mute_reaches_the_session_and_the_next_one(rig: Rig) -> None:
    mark = await rig.send("session/start", {"id": "a"})
    await rig.done("session/start", "a", mark)
    mark = await rig.send("mute", {"muted": True, "id": "m"})
    changed = await rig.watcher.json_on(P + "events", lambda d: d["type"] == "mute_changed", after=mark)
    assert changed["muted"] is True
    await rig.done("mute", "m", mark)
    assert rig.session.muted
    assert (await rig.watcher.json_on(P + "state", lambda d: d["muted"], after=mark))["state"] == "listening"
    mark = await rig.send("session/end", {})
    await rig.watcher.json_on(P + "events", lambda d: d["type"] == "session_ended", after=mark)
    mark = await rig.send("session/start", {"id": "b"})
    await rig.done("session/start", "b", mark)
    assert rig.session.muted and len(rig.host.sessions) == 2
    mark = await rig.send("mute", {"muted": False, "id": "u"})
    await rig.done("mute", "u", mark)
    assert not rig.session.muted


async def test_user_transcripts_metrics_and_session_errors(rig: Rig) -> None:
    mark = await rig.send("session/start", {"id": "a"})
    await rig.done("session/start", "a", mark)
    session = rig.session
    mark = len(rig.watcher.messages)
    session.emit(UserTranscript(1.0, 7, "what time do you", False, 0.5))  # interim: not published
    user = session.user_says("What time do you open?")
    agent = session.agent_says("We open at nine.")
    session.agent_says("")  # nothing was heard: not an utterance
    session.emit(TurnMetrics(3.0, 7, 520.0, 700.0, 900.0, 1500.0, 180.0, 200.0, 600.0))
    session.emit(ErrorEvent(3.5, "llm", "timed out", True, {"turn": 7}))
    error = await rig.watcher.json_on(P + "events", lambda d: d["type"] == "error", after=mark)
    assert error["source"] == "llm" and error["message"] == "timed out" and error["details"] == {"turn": 7}
    metrics = await rig.watcher.json_on(P + "metrics", after=mark)
    assert metrics["type"] == "metrics" and metrics["first_audio"] == 1500.0 and metrics["turn"] == 7
    said = transcripts(rig.watcher, mark)
    assert [(t["type"], t["text"], t["turn"]) for t in said] == [
        ("user_transcript", user.text, user.turn), ("agent_transcript", agent.text, agent.turn)
    ]  # fmt: skip
    assert said[0]["start"] == round(user.start, 3) and said[0]["final"]


def _huge() -> bytes:
    return json.dumps({"text": "a" * (1024 * 1024)}).encode()


MALFORMED = [
    ("say", b'{"text": "unterminated', "invalid_json", "not JSON"),
    ("say", b"hello", "invalid_json", "not JSON"),
    ("say", b'{"text": 5}', "invalid_payload", "text: Input should be a valid string"),
    ("mute", b'{"muted": "yes"}', "invalid_payload", "muted: Input should be a valid boolean"),
    ("presence", b'{"event": "arrived"}', "invalid_payload", "event: Input should be 'approached' or 'left'"),
    ("say", b"{}", "invalid_payload", "text: Field required"),
    ("mute", b'{"id": "m1"}', "invalid_payload", "muted: Field required"),
    ("say", b'{"text": "   "}', "invalid_payload", "the text is blank"),
    ("say", b'{"text": "hi", "voice": "loud"}', "invalid_payload", "voice: Extra inputs are not permitted"),
    ("persona", b'{"name": "../../etc/passwd"}', "invalid_payload", "name: String should match pattern"),
    ("say", b'["text"]', "invalid_payload", "expected a JSON object, got list"),
    ("say", _huge(), "too_large", "commands are at most"),
    ("dance", b"{}", "unknown_command", "unknown command 'dance'"),
    ("session", b"{}", "unknown_command", "the commands are: say, persona"),
    ("say", b'{"text": "caf\xe9"}', "not_utf8", "not UTF-8"),
    ("say", b"\xff\xfe\x00", "not_utf8", "not UTF-8"),
]


async def test_malformed_commands_are_answered_and_the_kiosk_lives(rig: Rig) -> None:
    mark = await rig.send("session/start", {"id": "a"})
    await rig.done("session/start", "a", mark)
    for command, payload, code, reason in MALFORMED:
        mark = await rig.send(command, payload)
        error = await rig.error(mark)
        assert error["error"] == code, (command, payload[:40], error)
        assert reason in error["reason"], (reason, error["reason"])
        assert error["topic"] == P + "cmd/" + command and error["kiosk"] == KIOSK
        if code == "invalid_payload" and payload.startswith(b"{"):
            assert error["details"] and "send e.g." in error["reason"]
    # the id of a command with a bad field is echoed
    mark = await rig.send("mute", {"id": "m1"})
    assert (await rig.error(mark))["id"] == "m1"
    # a say with no session is refused with the way out
    mark = await rig.send("session/end", {})
    await rig.watcher.json_on(P + "events", lambda d: d["type"] == "session_ended", after=mark)
    mark = await rig.send("say", {"text": "Hello?"})
    assert "no session is running" in (await rig.error(mark))["reason"]
    mark = await rig.send("session/end", {})
    assert "no session is running" in (await rig.error(mark))["reason"]
    # still alive: online, and commands work
    assert rig.bridge.connected.is_set() and rig.bridge.connections == 1
    mark = await rig.send("presence", {"event": "approached", "id": "alive"})
    await rig.done("presence", "alive", mark)
    assert transcripts(rig.watcher, mark)[0]["text"].startswith("Hi, I'm Ada")
    statuses = [m.text for m in rig.watcher.on(P + "status")]
    assert statuses[-1] == "online" and statuses.count("online") == 1  # (a retained 'offline' may precede)


def test_parse_command_accepts_the_documented_examples() -> None:
    from integrations.mqtt.messages import COMMANDS

    for name, model in COMMANDS.items():
        command = parse_command(name, model.example.encode())
        assert type(command) is model
    assert parse_command("session/end", b"").command == "session/end"  # an empty payload is {}
    assert len(_huge()) > MAX_PAYLOAD_BYTES


async def test_a_retained_command_is_not_run(broker: Broker) -> None:
    """A retained command would run again at every reconnect: it is refused when it arrives retained."""
    prefix = "dyad/lobby-9/"
    async with Watcher(broker.port, prefix + "#") as watcher:
        await watcher.publish(prefix + "cmd/presence", b'{"event": "approached"}', retain=True)
        bridge = MqttBridge(MqttSettings(broker=broker.url, kiosk_id="lobby-9"))
        host = FakeHost()
        Kiosk(bridge, host, load_persona("default"), "default")
        runner = asyncio.create_task(bridge.run())
        try:
            error = await watcher.json_on(prefix + "error")
            assert error["error"] == "invalid_payload" and "retained commands are ignored" in error["reason"]
            await watcher.publish(prefix + "cmd/mute", b'{"muted": true, "id": "x"}')
            await watcher.json_on(prefix + "events", lambda d: d.get("id") == "x")
            assert host.sessions == [] and len(watcher.on(prefix + "error")) == 1
        finally:
            bridge.stop()
            await asyncio.wait_for(runner, WAIT_S)
            await watcher.publish(prefix + "cmd/presence", b"", retain=True)  # clear it
