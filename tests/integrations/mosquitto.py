"""Test support for the MQTT kiosk bridge: a real Mosquitto broker on a free loopback port, a recording
MQTT client, and a session double that emits the real ``agent/events.py`` events.

Run as a script it is a kiosk process (the bridge with the session double), for tests that kill it:
``python tests/integrations/mosquitto.py mqtt://127.0.0.1:PORT KIOSK_ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from agent.events import AgentState, AgentTranscript, SessionEvent, StateChanged, UserTranscript
from agent.persona import Persona
from integrations.llm.local_server import free_port

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None
)
WAIT_S = 30.0  # generous: the machine is shared and slow; no test asserts a duration


# ---------------------------------------------------------------------------------------------------
# The broker
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, folder: Path) -> TlsFiles:
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        def name(cn: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (
            x509.CertificateBuilder()
            .subject_name(name("dyad test CA"))
            .issuer_name(name("dyad test CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name("127.0.0.1"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        files = cls(folder / "ca.crt", folder / "server.crt", folder / "server.key")
        files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return files


class Broker:
    """One Mosquitto process with its own config in ``folder``; restartable on the same port."""

    def __init__(
        self,
        folder: Path,
        *,
        persistence: bool = False,
        users: dict[str, str] | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        if MOSQUITTO is None:
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto")
        self.folder = folder
        self.port = free_port()
        self.persistence = persistence
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        self.config = folder / "mosquitto.conf"
        self.log_file = folder / "mosquitto.log"
        self.db = folder / "mosquitto.db"
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"user {getpass.getuser()}",  # as root mosquitto would switch to 'mosquitto' and lose the folder
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {folder}/",
            "autosave_interval 3600",
        ]
        if users:
            passwords = folder / "passwords"
            passwords.touch(mode=0o600)
            for user, password in users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(passwords), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}"]
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        assert MOSQUITTO is not None
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited ({self.process.returncode}): {err}\n{self.log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}:\n{self.log()}")

    def save(self) -> None:
        """Write the persistence database now (SIGUSR1) and wait until it is on disk."""
        assert self.process is not None and self.persistence
        before = self.db.stat().st_mtime_ns if self.db.exists() else 0
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.db.exists() and self.db.stat().st_mtime_ns != before and self.db.stat().st_size > 0:
                time.sleep(0.2)  # let the write finish
                return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not save its database")

    def kill(self) -> None:
        """SIGKILL: no goodbye to anyone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:] if self.log_file.exists() else ""


# ---------------------------------------------------------------------------------------------------
# A recording client
# ---------------------------------------------------------------------------------------------------


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Watcher:
    """Subscribes to ``topic`` and records every message; reconnects when the broker goes away.

    ``persistent``: a durable session (clean_session false, QoS 1): the broker keeps the subscription and
    queues messages while this client is away, across a broker restart if the broker persists them.
    """

    port: int
    topic: str = "dyad/#"
    persistent: bool = False
    client_id: str | None = None
    tls: TlsFiles | None = None
    username: str | None = None
    password: str | None = None
    messages: list[Received] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    connections: int = 0
    _client: aiomqtt.Client | None = None
    _task: asyncio.Task[None] | None = None
    _new: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> Watcher:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.connected.wait(), WAIT_S)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        subscribed = False
        while True:
            try:
                tls = aiomqtt.TLSParameters(ca_certs=str(self.tls.ca)) if self.tls else None
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.port,
                    identifier=self.client_id,
                    clean_session=not self.persistent,
                    tls_params=tls,
                    username=self.username,
                    password=self.password,
                    socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
                ) as client:
                    self._client = client
                    if not (self.persistent and subscribed):
                        await client.subscribe(self.topic, qos=1)
                        subscribed = True
                    self.connections += 1
                    self.connected.set()
                    async for message in client.messages:
                        self.messages.append(Received(str(message.topic), message.payload, message.retain))
                        self._new.set()
            except aiomqtt.MqttError:
                self.connected.clear()
                self._client = None
                await asyncio.sleep(0.1)

    async def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's ack."""
        await asyncio.wait_for(self.connected.wait(), WAIT_S)
        assert self._client is not None
        await self._client.publish(topic, payload, qos=1, retain=retain)

    async def sync(self) -> None:
        """A round trip: the broker has processed everything this client sent before (its acks too)."""
        await self.publish("sync/" + (self.client_id or "watcher"), b"")

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    async def wait_for(
        self, match: Callable[[Received], bool], *, after: int = 0, timeout: float = WAIT_S
    ) -> Received:
        """The first message from index ``after`` on that ``match`` es, waiting for it if needed."""
        deadline = asyncio.get_running_loop().time() + timeout
        index = after
        while True:
            while index < len(self.messages):
                if match(self.messages[index]):
                    return self.messages[index]
                index += 1
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                shown = "\n".join(f"  {m.topic} {m.payload[:200]!r}" for m in self.messages[after:])
                raise AssertionError(f"no matching message; got after #{after}:\n{shown}")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), left)

    async def json_on(
        self,
        topic: str,
        match: Callable[[dict[str, Any]], bool] = lambda d: True,
        *,
        after: int = 0,
        timeout: float = WAIT_S,
    ) -> dict[str, Any]:
        """The first JSON payload on ``topic`` (from index ``after``) that ``match`` es."""

        def ok(m: Received) -> bool:
            if m.topic != topic:
                return False
            try:
                data = m.json()
            except ValueError:
                return False
            return isinstance(data, dict) and match(data)

        found: dict[str, Any] = (await self.wait_for(ok, after=after, timeout=timeout)).json()
        return found


# ---------------------------------------------------------------------------------------------------
# The session side
# ---------------------------------------------------------------------------------------------------


class FakeSession:
    """Emits the real Session's event types and records what it was asked to do."""

    def __init__(self, persona: Persona) -> None:
        self.persona = persona
        self.state: AgentState = "idle"
        self.muted = False
        self.calls: list[tuple[str, ...]] = []
        self.turn = 0
        self.t = 0.0
        self._listeners: list[Callable[[SessionEvent], None]] = []

    def on(self, listener: Callable[[SessionEvent], None]) -> None:
        self._listeners.append(listener)

    def emit(self, event: SessionEvent) -> SessionEvent:
        for listener in list(self._listeners):
            listener(event)
        return event

    def tick(self) -> float:
        self.t += 0.5
        return self.t

    def set_state(self, state: AgentState) -> None:
        if state != self.state:
            previous, self.state = self.state, state
            self.emit(StateChanged(self.tick(), state, previous))

    async def start(self) -> None:
        self.calls.append(("start",))
        self.set_state("listening")
        if self.persona.llm.greeting:
            await self._speak(self.persona.llm.greeting)

    async def say(self, text: str) -> object:
        self.calls.append(("say", text))
        return await self._speak(text)

    async def _speak(self, text: str) -> AgentTranscript:
        self.turn += 1
        self.set_state("speaking")
        event = AgentTranscript(self.tick(), self.turn, text, True, f"speech_{self.turn}")
        self.emit(event)
        self.set_state("listening")
        return event

    def user_says(self, text: str) -> UserTranscript:
        self.turn += 1
        start = self.tick()
        event = UserTranscript(self.tick(), self.turn, text, True, start, self.t)
        self.emit(event)
        return event

    def agent_says(self, text: str) -> AgentTranscript:
        event = AgentTranscript(self.tick(), self.turn, text, True, f"speech_{self.turn}")
        self.emit(event)
        return event

    async def aclose(self) -> None:
        self.calls.append(("aclose",))
        self.set_state("idle")


class FakeHost:
    """A transport double: sessions are :class:`FakeSession` s, opened at once."""

    def __init__(self) -> None:
        self.sessions: list[FakeSession] = []
        self.personas: list[Persona] = []
        self.kiosk: Any = None
        self.started = False
        self.closed = False

    def bind(self, kiosk: Any) -> None:
        self.kiosk = kiosk

    async def start(self) -> None:
        self.started = True

    async def aclose(self) -> None:
        self.closed = True

    def use_persona(self, persona: Persona) -> None:
        self.personas.append(persona)

    async def open_session(self, persona: Persona, attach: Callable[[Any], None]) -> FakeSession:
        session = FakeSession(persona)
        self.sessions.append(session)
        attach(session)
        await session.start()
        return session

    async def close_session(self, session: Any) -> None:
        await session.aclose()


def main() -> None:
    """A kiosk process with the session double (for tests that kill it)."""
    import logging

    from agent.persona import load_persona
    from integrations.mqtt.bridge import MqttSettings
    from integrations.mqtt.kiosk import run_kiosk

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    broker, kiosk_id = sys.argv[1], sys.argv[2]
    settings = MqttSettings(broker=broker, kiosk_id=kiosk_id, min_backoff_s=0.1, max_backoff_s=1.0)
    asyncio.run(run_kiosk(settings, FakeHost(), load_persona("default"), "default"))


if __name__ == "__main__":
    main()
