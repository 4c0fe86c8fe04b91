"""One kiosk: the avatar's sessions bridged to MQTT.

The :class:`Kiosk` attaches to whatever Session a transport runs (it subscribes with ``Session.on``) and
turns its events into MQTT messages: ``state`` (retained), final ``transcript`` s, ``metrics``, ``events``
(errors and ``handoff_requested``: staff should come) and ``actions`` (a kiosk action declared in the
persona, e.g. ``print_ticket``, for the kiosk's hardware to carry out). It carries out the commands the
:class:`~integrations.mqtt.bridge.MqttBridge` validated, by calling the Session (``say``, ``muted``) or the
transport that hosts sessions (start, end). A persona switch applies to the next session. A transport is a
:class:`SessionHost`; ``hosts.py`` has the browser page and the files ones, and tests use their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from agent.events import (
    ActionRequested,
    AgentState,
    AgentTranscript,
    ErrorEvent,
    HandoffRequested,
    SessionEvent,
    StateChanged,
    TurnMetrics,
    UserTranscript,
    to_dict,
)
from agent.persona import Persona, PersonaError, load_persona
from integrations.lifecycle import on_stop_signals
from integrations.mqtt.bridge import MqttBridge, MqttSettings
from integrations.mqtt.messages import (
    Command,
    CommandError,
    MuteChanged,
    MuteCommand,
    PersonaChanged,
    PersonaCommand,
    PresenceCommand,
    SayCommand,
    SessionEndCommand,
    SessionEnded,
    SessionStartCommand,
    SessionStarted,
    StatePayload,
)

log = logging.getLogger(__name__)


class KioskSession(Protocol):
    """What the kiosk needs of a session; ``agent.session.Session`` is one."""

    state: AgentState
    muted: bool

    def on(self, listener: Callable[[SessionEvent], None]) -> None: ...

    async def say(self, text: str) -> object: ...


class HostError(RuntimeError):
    """The transport cannot do what was asked (the reason is sent back on ``error``)."""


class SessionHost(Protocol):
    """A transport that runs sessions for the kiosk.

    ``open_session`` starts one (``Session.start``: it greets with the persona's greeting, if any) and
    calls ``attach`` with the Session before it starts, so no event is missed; ``close_session`` ends
    it. A session that ends by itself (the page closed, the recording ran out) is reported with
    ``Kiosk.detach``.
    """

    def bind(self, kiosk: Kiosk) -> None: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def use_persona(self, persona: Persona) -> None: ...

    async def open_session(
        self, persona: Persona, attach: Callable[[KioskSession], None]
    ) -> KioskSession: ...

    async def close_session(self, session: KioskSession) -> None: ...


class Kiosk:
    """The kiosk's sessions, persona, presence and microphone, driven by MQTT commands."""

    def __init__(self, bridge: MqttBridge, host: SessionHost, persona: Persona, persona_name: str) -> None:
        self.bridge = bridge
        self.host = host
        self.persona = persona
        self.persona_name = persona_name
        self.session: KioskSession | None = None
        self.session_id: str | None = None
        self.muted = False
        self.state: AgentState = "idle"
        self.since = time.time()
        bridge.handler = self
        host.bind(self)
        host.use_persona(persona)
        self._publish_state()

    # -- sessions -----------------------------------------------------------------------------------

    def attach(self, session: KioskSession, reason: str) -> None:
        """Bridge ``session`` (called by the host when a session begins)."""
        if self.session is session:
            return
        if self.session is not None:
            log.warning("a second session began; the kiosk now follows the new one")
            self.detach(self.session, "replaced")
        self.session, self.session_id = session, uuid.uuid4().hex[:12]
        session.muted = self.muted
        session.on(lambda event: self._on_event(session, event))
        log.info("kiosk session %s started (%s)", self.session_id, reason)
        self.bridge.publish(
            "events", SessionStarted(persona=self.persona_name, reason=reason).payload(), self.session_id
        )
        self._set_state(session.state, changed=True)

    def detach(self, session: KioskSession, reason: str) -> None:
        """Stop bridging ``session`` (called when it has ended)."""
        if self.session is not session:
            return
        log.info("kiosk session %s ended (%s)", self.session_id, reason)
        self.bridge.publish("events", SessionEnded(reason=reason).payload(), self.session_id)
        self.session, self.session_id = None, None
        self._set_state("idle", changed=True)

    async def start_session(self, reason: str, *, greet: bool = True) -> None:
        """Open a session on the host with the current persona."""
        persona = self.persona
        if not greet:
            persona = persona.model_copy(update={"llm": persona.llm.model_copy(update={"greeting": ""})})
        attached = False

        def attach(session: KioskSession) -> None:
            nonlocal attached
            attached = True
            self.attach(session, reason)

        try:
            session = await self.host.open_session(persona, attach)
        except HostError as exc:
            raise CommandError("failed", str(exc)) from None
        if not attached:  # (a host that could not call it earlier)
            self.attach(session, reason)

    async def end_session(self, reason: str) -> None:
        """End the running session, if any."""
        session = self.session
        if session is None:
            return
        try:
            await self.host.close_session(session)
        finally:
            self.detach(session, reason)

    async def aclose(self) -> None:
        """End the session (reason ``shutdown``)."""
        await self.end_session("shutdown")

    # -- commands -----------------------------------------------------------------------------------

    async def handle(self, command: Command) -> None:
        """Carry out one validated command (raises CommandError with the reason it cannot)."""
        if isinstance(command, SayCommand):
            if self.session is None:
                raise CommandError(
                    "failed",
                    "no session is running: start one with cmd/session/start (greet false for a quiet "
                    "start) or a presence 'approached'",
                )
            await self.session.say(command.text)
        elif isinstance(command, PersonaCommand):
            await self._switch_persona(command.name)
        elif isinstance(command, SessionStartCommand):
            if self.session is not None:
                raise CommandError("failed", "a session is already running; end it with cmd/session/end")
            await self.start_session("command", greet=command.greet)
        elif isinstance(command, SessionEndCommand):
            if self.session is None:
                raise CommandError("failed", "no session is running")
            await self.end_session("command")
        elif isinstance(command, PresenceCommand):
            if command.event == "approached" and self.session is None:
                await self.start_session("presence")
            elif command.event == "left" and self.session is not None:
                await self.end_session("presence")
        elif isinstance(command, MuteCommand):
            self.muted = command.muted
            if self.session is not None:
                self.session.muted = command.muted
            log.info("microphone %s", "muted" if command.muted else "unmuted")
            self.bridge.publish("events", MuteChanged(muted=command.muted).payload(), self.session_id)
            self._publish_state()
        else:
            raise CommandError("unknown_command", f"{command.command!r} is not handled")

    async def _switch_persona(self, name: str) -> None:
        try:
            persona = await asyncio.to_thread(load_persona, name)
        except PersonaError as exc:
            raise CommandError("failed", f"cannot switch persona: {exc}") from None
        self.persona, self.persona_name = persona, name
        self.host.use_persona(persona)
        applies = "next_session" if self.session is not None else "now"
        log.info("persona %s (%s), applies %s", name, persona.identity.display_name, applies)
        event = PersonaChanged(persona=name, display_name=persona.identity.display_name, applies=applies)
        self.bridge.publish("events", event.payload(), self.session_id)
        self._publish_state()

    # -- events -------------------------------------------------------------------------------------

    def _on_event(self, session: KioskSession, event: SessionEvent) -> None:
        if session is not self.session:
            return
        sid = self.session_id
        if isinstance(event, StateChanged):
            self._set_state(event.state)
        elif isinstance(event, UserTranscript | AgentTranscript):
            if event.final and event.text.strip():
                self.bridge.publish("transcript", to_dict(event), sid)
        elif isinstance(event, TurnMetrics):
            self.bridge.publish("metrics", to_dict(event), sid)
        elif isinstance(event, ErrorEvent | HandoffRequested):
            self.bridge.publish("events", to_dict(event), sid)
        elif isinstance(event, ActionRequested):
            self.bridge.publish("actions", to_dict(event), sid)

    def _set_state(self, state: AgentState, *, changed: bool = False) -> None:
        """``changed``: publish even if the state is the same (the session changed)."""
        if state != self.state:
            self.state, self.since = state, time.time()
        elif not changed:
            return
        self._publish_state()

    def _publish_state(self) -> None:
        self.bridge.set_state(
            StatePayload(
                state=self.state,
                since=round(self.since, 3),
                session=self.session_id,
                persona=self.persona_name,
                muted=self.muted,
            )
        )


async def run_kiosk(
    settings: MqttSettings,
    host: SessionHost,
    persona: Persona,
    persona_name: str,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the kiosk until SIGINT/SIGTERM (or ``stop`` is set): the transport, the bridge, then a clean
    shutdown (session ended, queued messages sent, ``status`` offline)."""
    stop = stop or asyncio.Event()
    bridge = MqttBridge(settings)
    kiosk = Kiosk(bridge, host, persona, persona_name)
    log.info(
        "kiosk %s: broker %s, topics %s*, persona %s",
        settings.kiosk_id,
        settings.address,
        bridge.topics.prefix,
        persona_name,
    )
    with on_stop_signals(stop.set):
        runner = asyncio.create_task(bridge.run(), name="dyad-mqtt")
        try:
            await host.start()
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({runner, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if runner.done():
                await runner  # it only returns when stopped; an error propagates
        finally:
            try:
                await kiosk.aclose()
                await host.aclose()
            finally:
                bridge.stop()
                await runner
