"""The MQTT side of a kiosk: one connection kept alive, an ordered outbox, validated commands.

``MqttBridge.run`` connects, subscribes to ``<prefix>cmd/#`` (QoS 1), publishes ``status`` = online and
the latest ``state`` (both retained; the broker's last will sets ``status`` = offline), and then sends
the outbox in order: ``transcript``, ``events``, ``actions`` and ``error`` at QoS 1, ``metrics`` at
QoS 0. A message leaves the outbox only when the broker has acknowledged it, so what is produced while
the broker is away (bounded by ``buffer``; the oldest go first) is delivered, in order, once it is
back. Connection failures, at start or later, are retried with exponential backoff and jitter, and
logged; credentials never appear in a log line.

Commands are validated (``messages.parse_command``) as they arrive; a bad one is answered on ``error``
at once, a good one is queued and carried out in order by the ``CommandHandler`` (the kiosk), then
acknowledged on ``events`` (``command_done``) or answered on ``error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import aiomqtt
from pydantic import BaseModel, ConfigDict, Field, FilePath, SecretStr, model_validator

from integrations.mqtt.messages import (
    MAX_PAYLOAD_BYTES,
    BufferOverflow,
    Command,
    CommandDone,
    CommandError,
    Envelope,
    ErrorPayload,
    StatePayload,
    now,
    parse_command,
)

log = logging.getLogger(__name__)

Channel = Literal["transcript", "metrics", "events", "actions", "error"]
QOS: dict[Channel, int] = {"transcript": 1, "metrics": 0, "events": 1, "actions": 1, "error": 1}
CONNECT_TIMEOUT_S = 10.0
MAX_PENDING_COMMANDS = 32


# ---------------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------------


class MqttSettings(BaseModel):
    """How to reach the broker and name the topics; validated once, at start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    broker: str = Field(description="mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS)")
    kiosk_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    topic_prefix: str | None = Field(None, description="default dyad/<kiosk_id>/")
    username: str | None = Field(None, min_length=1)
    password: SecretStr | None = None
    tls: bool = False
    ca_file: FilePath | None = None
    cert_file: FilePath | None = None
    key_file: FilePath | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)
    buffer: int = Field(1000, ge=1, le=1_000_000, description="messages kept while the broker is away")
    min_backoff_s: float = Field(0.5, gt=0.0, le=60.0)
    max_backoff_s: float = Field(30.0, gt=0.0, le=3600.0)

    @model_validator(mode="after")
    def _check(self) -> MqttSettings:
        url = urlsplit(self.broker)
        if url.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"broker {self.broker!r}: use mqtt://HOST:PORT or mqtts://HOST:PORT")
        if url.username is not None or url.password is not None:
            raise ValueError(
                "the broker URL must not carry credentials: use --username (or DYAD_MQTT_USERNAME) and "
                "DYAD_MQTT_PASSWORD or --password-file"
            )
        if not url.hostname or url.path not in ("", "/") or url.query or url.fragment:
            raise ValueError(f"broker {self.broker!r}: expected mqtt://HOST:PORT, nothing after the port")
        try:
            url.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError(f"broker {self.broker!r}: the port must be a number 1-65535") from None
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username: set --username or DYAD_MQTT_USERNAME")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("--key-file needs --cert-file (the client certificate)")
        if (self.ca_file or self.cert_file) and not self.use_tls:
            raise ValueError("--ca-file/--cert-file need TLS: add --tls or use an mqtts:// broker URL")
        if self.topic_prefix is not None and (
            not self.topic_prefix or any(c in self.topic_prefix for c in "#+\0")
        ):
            raise ValueError(f"topic prefix {self.topic_prefix!r}: no wildcards (# +), not empty")
        if self.min_backoff_s > self.max_backoff_s:
            raise ValueError("min_backoff_s must not exceed max_backoff_s")
        return self

    @property
    def use_tls(self) -> bool:
        """TLS from ``--tls`` or the mqtts:// scheme."""
        return self.tls or urlsplit(self.broker).scheme == "mqtts"

    @property
    def host(self) -> str:
        """The broker's host name or address."""
        return urlsplit(self.broker).hostname or ""

    @property
    def port(self) -> int:
        """The broker's port (1883, or 8883 with TLS, when not given)."""
        return urlsplit(self.broker).port or (8883 if self.use_tls else 1883)

    @property
    def address(self) -> str:
        """The broker as shown in logs: scheme, host and port, never credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.use_tls else 'mqtt'}://{host}:{self.port}"

    @property
    def topics(self) -> Topics:
        """This kiosk's topics."""
        prefix = self.topic_prefix if self.topic_prefix is not None else f"dyad/{self.kiosk_id}/"
        return Topics(prefix if prefix.endswith("/") else prefix + "/")


@dataclass(frozen=True)
class Topics:
    """Every topic of one kiosk, under ``prefix`` (which ends with '/')."""

    prefix: str

    @property
    def status(self) -> str:
        return self.prefix + "status"

    @property
    def state(self) -> str:
        return self.prefix + "state"

    @property
    def commands(self) -> str:
        """The subscription: every command."""
        return self.prefix + "cmd/#"

    def channel(self, channel: Channel) -> str:
        """``transcript``, ``metrics``, ``events``, ``actions`` (kiosk actions to carry out) or ``error``."""
        return self.prefix + channel

    def command(self, name: str) -> str:
        """The topic of command ``name`` (``say``, ``session/start``, ...)."""
        return self.prefix + "cmd/" + name


# ---------------------------------------------------------------------------------------------------
# The bridge
# ---------------------------------------------------------------------------------------------------


class CommandHandler(Protocol):
    """Carries out validated commands; raises :class:`CommandError` to answer on ``error``."""

    async def handle(self, command: Command) -> None: ...


@dataclass
class _Message:
    topic: str
    payload: bytes
    qos: int


class MqttBridge:
    """One kiosk's MQTT connection (see the module docstring)."""

    def __init__(self, settings: MqttSettings, handler: CommandHandler | None = None) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.handler = handler
        self.client_id = f"dyad-kiosk-{settings.kiosk_id}"
        self.connected = asyncio.Event()  # set while a connection is up (for callers and tests)
        self.connections = 0  # successful connections so far
        self._outbox: deque[_Message] = deque()
        self._dropped = 0
        self._seq = 0
        self._state: StatePayload | None = None
        self._state_dirty = False
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._drain_deadline = 0.0
        self._commands: asyncio.Queue[tuple[str, Command]] = asyncio.Queue(MAX_PENDING_COMMANDS)

    # -- what the kiosk publishes -------------------------------------------------------------------

    def publish(self, channel: Channel, body: dict[str, Any], session: str | None = None) -> int:
        """Queue ``body`` (plus the envelope) for ``channel``; returns its ``seq``."""
        self._seq += 1
        envelope = Envelope(kiosk=self.settings.kiosk_id, seq=self._seq, ts=now(), session=session)
        payload = json.dumps({**envelope.payload(), **body}, ensure_ascii=False).encode()
        if len(self._outbox) >= self.settings.buffer:
            self._outbox.popleft()
            if self._dropped == 0:
                log.warning(
                    "the MQTT buffer is full (%d messages): dropping the oldest until %s is back",
                    self.settings.buffer,
                    self.settings.address,
                )
            self._dropped += 1
        self._outbox.append(_Message(self.topics.channel(channel), payload, QOS[channel]))
        self._wake.set()
        return self._seq

    def set_state(self, state: StatePayload) -> None:
        """The retained ``state``; only the latest is sent (and resent after every reconnect)."""
        self._state = state
        self._state_dirty = True
        self._wake.set()

    @property
    def pending(self) -> int:
        """Messages not yet acknowledged by the broker."""
        return len(self._outbox)

    # -- lifecycle ----------------------------------------------------------------------------------

    def stop(self, drain_s: float = 5.0) -> None:
        """Ask ``run`` to return: it sends what is queued (for up to ``drain_s`` if connected), sets
        ``status`` offline and disconnects."""
        self._drain_deadline = asyncio.get_running_loop().time() + drain_s
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Stay connected until :meth:`stop`, reconnecting with backoff; carry out commands meanwhile."""
        worker = asyncio.create_task(self._work(), name="dyad-mqtt-commands")
        backoff = self.settings.min_backoff_s
        failures = 0
        try:
            while not self._stopping.is_set():
                connections = self.connections
                try:
                    await self._connection()
                except ExceptionGroup as group:  # from the connection's two tasks
                    reason = "; ".join(_reason(e) for e in group.exceptions)
                except Exception as exc:
                    reason = _reason(exc)
                else:
                    break  # stopped
                self.connected.clear()
                if self._stopping.is_set():
                    break
                if self.connections > connections:  # it was up: start the backoff again
                    backoff, failures = self.settings.min_backoff_s, 0
                failures += 1
                delay = backoff * random.uniform(0.8, 1.2)
                log.warning(
                    "MQTT broker %s: %s; retrying in %.1f s (attempt %d, %d messages waiting)",
                    self.settings.address,
                    reason,
                    delay,
                    failures,
                    len(self._outbox),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                backoff = min(backoff * 2, self.settings.max_backoff_s)
        finally:
            self.connected.clear()
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            if self._outbox:
                log.warning("%d MQTT messages were never delivered", len(self._outbox))

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        tls = None
        if s.use_tls:
            tls = aiomqtt.TLSParameters(
                ca_certs=_path(s.ca_file), certfile=_path(s.cert_file), keyfile=_path(s.key_file)
            )
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password is not None else None,
            identifier=self.client_id,
            will=aiomqtt.Will(self.topics.status, b"offline", qos=1, retain=True),
            clean_session=True,
            keepalive=s.keepalive_s,
            timeout=CONNECT_TIMEOUT_S,
            tls_params=tls,
            # Nagle's algorithm holds small packets for the peer's delayed ack (~40 ms a hop)
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )

    async def _connection(self) -> None:
        """One connection, from CONNACK until it breaks (raises) or the bridge stops (returns)."""
        async with self._client() as client:
            self.connections += 1
            log.info("connected to MQTT broker %s as %s", self.settings.address, self.client_id)
            await client.subscribe(self.topics.commands, qos=1)
            await client.publish(self.topics.status, b"online", qos=1, retain=True)
            self._state_dirty = self._state is not None
            self.connected.set()
            receiver = asyncio.create_task(self._receive(client), name="dyad-mqtt-receive")
            sender = asyncio.create_task(self._send(client), name="dyad-mqtt-send")
            try:
                await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (receiver, sender):
                    task.cancel()
                results = await asyncio.gather(receiver, sender, return_exceptions=True)
            errors = [r for r in results if isinstance(r, Exception)]
            if errors:
                raise ExceptionGroup("the MQTT connection broke", errors)

    async def _send(self, client: aiomqtt.Client) -> None:
        """Send the state and the outbox in order; returns once stopping and drained."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            if self._state_dirty and self._state is not None:
                state = self._state
                self._state_dirty = False
                try:
                    await client.publish(self.topics.state, state.model_dump_json(), qos=1, retain=True)
                except BaseException:
                    self._state_dirty = True
                    raise
                continue
            stopping = self._stopping.is_set()
            if self._outbox and not (stopping and loop.time() > self._drain_deadline):
                message = self._outbox[0]
                await client.publish(message.topic, message.payload, qos=message.qos)
                if self._outbox and self._outbox[0] is message:
                    self._outbox.popleft()  # acknowledged (or sent, at QoS 0)
                continue
            if self._dropped and not stopping:
                dropped, self._dropped = self._dropped, 0
                log.warning("dropped %d MQTT messages while %s was away", dropped, self.settings.address)
                self.publish("events", BufferOverflow(dropped=dropped).payload())
                continue
            if stopping:
                await client.publish(self.topics.status, b"offline", qos=1, retain=True)
                return
            await self._wake.wait()

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self._on_message(str(message.topic), message.payload, message.retain)
        raise aiomqtt.MqttError("the message stream ended")

    # -- commands -----------------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: object, retained: bool) -> None:
        prefix = self.topics.prefix + "cmd/"
        if not topic.startswith(prefix):
            return
        data = payload if isinstance(payload, bytes) else str(payload).encode()
        if retained and not data:
            return  # someone cleared a retained command
        try:
            if retained:
                raise CommandError(
                    "invalid_payload",
                    "retained commands are ignored (they would run again at every reconnect); "
                    "publish without the retain flag and clear this one with an empty retained message",
                )
            command = parse_command(topic[len(prefix) :], data)
        except CommandError as exc:
            shown = topic if len(topic) <= 200 else topic[:200] + "..."
            log.warning("rejected MQTT command on %s (%d bytes): %s", shown, len(data), exc.reason[:300])
            self._answer_error(topic, exc)
            return
        try:
            self._commands.put_nowait((topic, command))
        except asyncio.QueueFull:
            self._answer_error(
                topic,
                CommandError(
                    "busy",
                    f"{MAX_PENDING_COMMANDS} commands are already waiting; try again shortly",
                    command_id=command.id,
                ),
            )

    def _answer_error(self, topic: str, error: CommandError) -> None:
        self.publish("error", ErrorPayload.of(topic, error).payload())

    async def _work(self) -> None:
        """Carry out queued commands one at a time, in arrival order."""
        while True:
            topic, command = await self._commands.get()
            if self.handler is None:
                self._answer_error(
                    topic, CommandError("failed", "no kiosk is attached", command_id=command.id)
                )
                continue
            try:
                await self.handler.handle(command)
            except CommandError as exc:
                exc.command_id = exc.command_id or command.id
                log.warning("MQTT command %s failed: %s", command.command, exc.reason)
                self._answer_error(topic, exc)
            except Exception as exc:
                log.exception("MQTT command %s failed", command.command)
                self._answer_error(
                    topic, CommandError("failed", str(exc) or repr(exc), command_id=command.id)
                )
            else:
                self.publish("events", CommandDone(command=command.command, id=command.id).payload())


def _reason(exc: BaseException) -> str:
    """A log line's worth of why a connection failed (a traceback too if it is not a network error)."""
    if not isinstance(exc, aiomqtt.MqttError | OSError):
        log.error("unexpected error in the MQTT connection", exc_info=exc)
    text = str(exc) or type(exc).__name__
    if "not authori" in text.lower() or "bad user name or password" in text.lower():
        text += " (check DYAD_MQTT_USERNAME and DYAD_MQTT_PASSWORD or --password-file)"
    return text


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


__all__ = ["MAX_PAYLOAD_BYTES", "CommandHandler", "MqttBridge", "MqttSettings", "Topics"]
