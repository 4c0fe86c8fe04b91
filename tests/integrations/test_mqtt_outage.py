"""The kiosk bridge when the broker or the kiosk dies: a real Mosquitto killed and restarted mid-session,
a broker that is not there when the kiosk starts, the buffer bound, and the last will when the kiosk
process is killed.

The test's own subscriber keeps a durable session (clean_session false) on a broker that persists it, so
it is subscribed the moment the restarted broker accepts the kiosk, whoever reconnects first."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from mosquitto import WAIT_S, Broker, FakeHost, FakeSession, Watcher

from agent.events import SessionEvent, to_dict
from agent.persona import load_persona
from integrations.mqtt.bridge import MqttBridge, MqttSettings
from integrations.mqtt.kiosk import Kiosk

KIOSK = "atrium"
P = f"dyad/{KIOSK}/"
CHILD = Path(__file__).with_name("mosquitto.py")


async def until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Rig:
    broker: Broker
    bridge: MqttBridge
    kiosk: Kiosk
    host: FakeHost
    watcher: Watcher
    runner: asyncio.Task[None] | None = None

    def run(self) -> None:
        self.runner = asyncio.create_task(self.bridge.run())

    @property
    def session(self) -> FakeSession:
        assert isinstance(self.kiosk.session, FakeSession)
        return self.kiosk.session

    def transcripts(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.watcher.messages if m.topic == P + "transcript"]


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """A persisting broker with the test's durable subscriber registered; the kiosk is not running yet."""
    broker = Broker(tmp_path, persistence=True)
    broker.start()
    settings = MqttSettings(broker=broker.url, kiosk_id=KIOSK, min_backoff_s=0.05, max_backoff_s=0.5)
    bridge = MqttBridge(settings)
    host = FakeHost()
    kiosk = Kiosk(bridge, host, load_persona("default"), "default")
    try:
        async with Watcher(broker.port, P + "#", persistent=True, client_id="durable-watcher") as watcher:
            rig = Rig(broker, bridge, kiosk, host, watcher)
            yield rig
            if rig.runner is not None:
                rig.bridge.stop(drain_s=1.0)
                await asyncio.wait_for(rig.runner, WAIT_S)
    finally:
        broker.kill()


def expected(events: Sequence[SessionEvent]) -> list[dict[str, Any]]:
    return [to_dict(e) for e in events]


def without_envelope(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if k not in ("kiosk", "seq", "ts", "session")} for m in messages]


async def test_broker_killed_and_restarted_mid_session(rig: Rig) -> None:
    rig.run()
    await asyncio.wait_for(rig.bridge.connected.wait(), WAIT_S)
    await rig.kiosk.start_session("command")
    session = rig.session
    produced: list[SessionEvent] = list(
        [session.user_says("Where is the cafe?"), session.agent_says("On the second floor.")]
    )
    session.set_state("speaking")
    await until(lambda: len(rig.transcripts()) == 3, "the first transcripts")  # greeting + 2
    await rig.watcher.json_on(P + "state", lambda d: d["state"] == "speaking")
    await rig.watcher.sync()  # the broker has our acks: nothing it saves is waiting for us
    rig.broker.save()
    rig.broker.kill()
    killed_at = len(rig.watcher.messages)
    await until(lambda: not rig.bridge.connected.is_set(), "the bridge to notice")

    outage: list[SessionEvent] = []
    for i in range(25):
        outage.append(session.user_says(f"Question {i} while the broker is down?"))
        outage.append(session.agent_says(f"Answer {i}, buffered."))
    session.set_state("thinking")  # the retained state the restarted broker must learn
    assert rig.bridge.pending >= 50

    rig.broker.start()
    await until(lambda: rig.bridge.connections == 2, "the bridge to reconnect")
    produced_after: list[SessionEvent] = [session.user_says("And after?")]
    total = 3 + len(outage) + 1
    await until(lambda: len(rig.transcripts()) >= total, "every transcript")
    await rig.watcher.sync()
    await asyncio.sleep(0.3)  # a duplicate would arrive now

    received = rig.transcripts()
    assert len(received) == total  # none lost, none twice
    seqs = [m["seq"] for m in received]
    assert seqs == sorted(set(seqs))
    greeting = received[0]
    assert greeting["text"].startswith("Hi, I'm Ada")
    assert without_envelope(received[1:]) == expected(produced + outage + produced_after)  # in order, as is
    assert {m["session"] for m in received} == {rig.kiosk.session_id}

    after_kill = rig.watcher.messages[killed_at:]
    assert any(m.topic == P + "status" and m.text == "online" for m in after_kill)  # republished live
    states = [m.json()["state"] for m in after_kill if m.topic == P + "state"]
    assert states and states[-1] == "thinking"
    async with Watcher(rig.broker.port, P + "#") as late:  # what a newcomer sees: the republished retained
        state = await late.json_on(P + "state")
        status = await late.wait_for(lambda m: m.topic == P + "status")
    assert state["state"] == "thinking" and state["session"] == rig.kiosk.session_id
    assert status.text == "online" and status.retain

    # the kiosk works on the new connection
    mark = len(rig.watcher.messages)
    await rig.watcher.publish(P + "cmd/say", b'{"text": "Back again.", "id": "b"}')
    await rig.watcher.json_on(P + "events", lambda d: d.get("id") == "b", after=mark)
    assert session.calls[-1] == ("say", "Back again.")


async def test_no_broker_at_start_then_one(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    await rig.watcher.sync()
    rig.broker.save()
    rig.broker.kill()
    caplog.set_level(logging.INFO, logger="integrations.mqtt")
    rig.run()  # the kiosk starts with no broker
    await rig.kiosk.start_session("presence")
    early = [rig.session.user_says("Hello, anyone?")]

    def retries() -> list[str]:
        return [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]

    await until(lambda: len(retries()) >= 3, "three retries")
    assert not rig.bridge.connected.is_set() and rig.bridge.connections == 0
    assert f"MQTT broker {rig.broker.url}" in retries()[0] and "refused" in retries()[0].lower()
    assert "attempt 3" in retries()[2]

    rig.broker.start()
    await asyncio.wait_for(rig.bridge.connected.wait(), WAIT_S)
    assert any("connected to MQTT broker" in r.getMessage() for r in caplog.records)
    started = await rig.watcher.json_on(P + "events", lambda d: d["type"] == "session_started")
    assert started["reason"] == "presence"
    await until(lambda: len(rig.transcripts()) == 2, "the greeting and the early question")
    assert without_envelope(rig.transcripts()[1:]) == expected(early)
    async with Watcher(rig.broker.port, P + "#") as late:
        assert (await late.wait_for(lambda m: m.topic == P + "status")).text == "online"
        assert (await late.json_on(P + "state"))["state"] == "listening"


async def test_buffer_is_bounded_and_says_what_it_dropped(rig: Rig) -> None:
    bridge = MqttBridge(rig.bridge.settings.model_copy(update={"buffer": 5}))
    kiosk = Kiosk(bridge, rig.host, load_persona("default"), "default")
    rig.bridge, rig.kiosk = bridge, kiosk
    await rig.watcher.sync()
    rig.broker.save()
    rig.broker.kill()
    rig.run()
    await kiosk.start_session("command")  # session_started + greeting, then 10 more: 12 messages
    said = [rig.session.user_says(f"Line {i}") for i in range(10)]
    assert bridge.pending == 5
    rig.broker.start()
    overflow = await rig.watcher.json_on(P + "events", lambda d: d["type"] == "buffer_overflow")
    assert overflow["dropped"] == 7
    await until(lambda: len(rig.transcripts()) == 5, "the newest five")
    assert [m["text"] for m in rig.transcripts()] == [e.text for e in said[-5:]]


# ---------------------------------------------------------------------------------------------------
# A kiosk process
# ---------------------------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def plain_broker(tmp_path: Path) -> AsyncIterator[Broker]:
    broker = Broker(tmp_path)
    broker.start()
    yield broker
    broker.kill()


@contextlib.asynccontextmanager
async def kiosk_process(broker: Broker, kiosk_id: str) -> AsyncIterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, str(CHILD), broker.url, kiosk_id], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        await asyncio.to_thread(process.wait)


async def test_last_will_says_offline_when_the_kiosk_is_killed(plain_broker: Broker) -> None:
    prefix = "dyad/killed-1/"
    async with (
        Watcher(plain_broker.port, prefix + "#") as watcher,
        kiosk_process(plain_broker, "killed-1") as kiosk,
    ):
        await watcher.wait_for(lambda m: m.topic == prefix + "status" and m.text == "online")
        await watcher.publish(prefix + "cmd/presence", b'{"event": "approached"}')
        await watcher.json_on(prefix + "events", lambda d: d["type"] == "session_started")
        kiosk.send_signal(signal.SIGKILL)
        offline = await watcher.wait_for(lambda m: m.topic == prefix + "status" and m.text == "offline")
        assert await asyncio.to_thread(kiosk.wait, WAIT_S) == -signal.SIGKILL
    assert not offline.retain  # delivered live to us; and kept for newcomers:
    async with Watcher(plain_broker.port, prefix + "#") as late:
        status = await late.wait_for(lambda m: m.topic == prefix + "status")
    assert status.text == "offline" and status.retain


async def test_sigterm_ends_the_session_and_goes_offline(plain_broker: Broker) -> None:
    prefix = "dyad/stopped-1/"
    async with (
        Watcher(plain_broker.port, prefix + "#") as watcher,
        kiosk_process(plain_broker, "stopped-1") as kiosk,
    ):
        await watcher.wait_for(lambda m: m.topic == prefix + "status" and m.text == "online")
        await watcher.publish(prefix + "cmd/session/start", b"{}")
        await watcher.json_on(prefix + "events", lambda d: d["type"] == "session_started")
        kiosk.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(kiosk.wait, WAIT_S) == 0
        ended = await watcher.json_on(prefix + "events", lambda d: d["type"] == "session_ended")
        assert ended["reason"] == "shutdown"
        await watcher.wait_for(lambda m: m.topic == prefix + "status" and m.text == "offline")
        state = await watcher.json_on(prefix + "state", lambda d: d["session"] is None)
        assert state["state"] == "idle"
