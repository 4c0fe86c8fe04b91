"""Kiosk actions and hand-offs reach a real Mosquitto broker: an ``action`` event of the Session (a
declared action such as ``print_ticket``, called by a trigger phrase or the LLM) is published on
``<prefix>actions``, a ``handoff_requested`` on ``<prefix>events``, both with the envelope.

The session side is the double of ``mosquitto.py``, emitting the real ``agent/events.py`` events; that
the real Session emits them is ``tests/agent/test_session_answers.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio
from mosquitto import WAIT_S, Broker, FakeHost, FakeSession, Watcher

from agent.events import ActionRequested, HandoffRequested
from agent.persona import load_persona
from integrations.mqtt.bridge import MqttBridge, MqttSettings
from integrations.mqtt.kiosk import Kiosk

KIOSK = "desk-2"
P = f"dyad/{KIOSK}/"


@pytest_asyncio.fixture
async def kiosk(broker: Broker) -> AsyncIterator[tuple[Kiosk, Watcher]]:
    bridge = MqttBridge(MqttSettings(broker=broker.url, kiosk_id=KIOSK))
    kiosk = Kiosk(bridge, FakeHost(), load_persona("library_receptionist"), "library_receptionist")
    runner = asyncio.create_task(bridge.run())
    try:
        async with Watcher(broker.port, P + "#") as watcher:
            await asyncio.wait_for(bridge.connected.wait(), WAIT_S)
            await kiosk.start_session("test")
            yield kiosk, watcher
            await kiosk.aclose()
            bridge.stop()
            await asyncio.wait_for(runner, WAIT_S)
    finally:
        if not runner.done():
            runner.cancel()


async def test_a_declared_action_reaches_the_broker_on_actions(kiosk: tuple[Kiosk, Watcher]) -> None:
    bridged, watcher = kiosk
    session = bridged.session
    assert isinstance(session, FakeSession)
    session.emit(ActionRequested(1.5, 2, "print_floor_map", {"floor": "2"}, "It's printing now."))

    message = await watcher.json_on(P + "actions")
    assert message["type"] == "action" and message["name"] == "print_floor_map"
    assert message["args"] == {"floor": "2"} and message["turn"] == 2 and message["t"] == 1.5
    assert message["kiosk"] == KIOSK and message["session"] == bridged.session_id and message["seq"] >= 1


async def test_a_handoff_request_reaches_the_broker_on_events(kiosk: tuple[Kiosk, Watcher]) -> None:
    bridged, watcher = kiosk
    session = bridged.session
    assert isinstance(session, FakeSession)
    session.emit(HandoffRequested(3.0, 4, "Can I talk to a librarian?"))

    message = await watcher.json_on(P + "events", lambda d: d["type"] == "handoff_requested")
    assert message["reason"] == "Can I talk to a librarian?" and message["turn"] == 4
    assert message["session"] == bridged.session_id
    assert not [m for m in watcher.messages if m.topic == P + "actions"]
