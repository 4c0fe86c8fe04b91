"""``dyad kiosk``: one kiosk's avatar bridged to MQTT (state, transcripts, metrics, remote commands)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from integrations.mqtt.kiosk import SessionHost

TRANSPORTS = ("browser", "livekit", "files")
PASSWORD_ENV = "DYAD_MQTT_PASSWORD"


def _fail(message: str) -> typer.Exit:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]dyad kiosk[/]: {message}", highlight=False)
    return typer.Exit(2)


def _password(password_file: Path | None) -> str | None:
    """The broker password: ``--password-file`` (first line), else ``DYAD_MQTT_PASSWORD``."""
    if password_file is None:
        return os.environ.get(PASSWORD_ENV) or None
    try:
        lines = password_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read --password-file {password_file}: {exc}") from None
    if not lines or not lines[0]:
        raise _fail(f"--password-file {password_file} is empty: put the password on its first line")
    return lines[0]


def _livekit_host(room: str | None, url: str | None, attend: str) -> SessionHost:
    """The LiveKit transport, with its room, server and credentials checked up front."""
    from integrations.livekit.attendee import AttendPolicy
    from integrations.mqtt.hosts import LiveKitHost

    if not room:
        raise _fail("--transport livekit needs --room (the room the kiosk's own LiveKit client joins)")
    missing = [v for v in ("LIVEKIT_API_KEY", "LIVEKIT_API_SECRET") if not os.environ.get(v)]
    if not (url or os.environ.get("LIVEKIT_URL")):
        missing.insert(0, "LIVEKIT_URL (or --livekit-url)")
    if missing:
        raise _fail(f"--transport livekit needs {', '.join(missing)}")
    try:
        policy = AttendPolicy.parse(attend)
    except ValueError as exc:
        raise _fail(f"--attend: {exc}") from None
    return LiveKitHost(room, url=url, policy=policy)


def kiosk(
    broker: str = typer.Option(..., "--broker", help="mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS"),
    kiosk_id: str = typer.Option(..., "--kiosk-id", help="this kiosk's name: letters, digits, _ . -"),
    persona_name: str | None = typer.Option(None, "--persona", help="persona name or YAML path"),
    transport: str = typer.Option("browser", "--transport", help="browser, livekit or files"),
    topic_prefix: str | None = typer.Option(None, "--topic-prefix", help="default dyad/<kiosk-id>/"),
    username: str | None = typer.Option(None, "--username", envvar="DYAD_MQTT_USERNAME", help="broker user"),
    password_file: Path | None = typer.Option(
        None, "--password-file", help="file holding the broker password (else env DYAD_MQTT_PASSWORD)"
    ),
    tls: bool = typer.Option(False, "--tls", help="connect with TLS (implied by mqtts://)"),
    ca_file: Path | None = typer.Option(None, "--ca-file", help="CA certificate(s) to trust, PEM"),
    cert_file: Path | None = typer.Option(None, "--cert-file", help="client certificate, PEM"),
    key_file: Path | None = typer.Option(None, "--key-file", help="client private key, PEM"),
    buffer: int = typer.Option(1000, "--buffer", help="messages kept while the broker is away"),
    host: str = typer.Option("127.0.0.1", "--host", help="browser: address to serve the page on"),
    port: int = typer.Option(8080, "--port", help="browser: port to serve the page on"),
    user_audio: Path | None = typer.Option(None, "--user-audio", help="files: the visitor's recording"),
    user_video: Path | None = typer.Option(None, "--user-video", help="files: the visitor's camera"),
    out_dir: Path = typer.Option(Path("kiosk-sessions"), "--out-dir", help="files: MP4 + JSON per session"),
    seed: int = typer.Option(0, "--seed", help="files: same seed + same input = same conversation"),
    room: str | None = typer.Option(None, "--room", help="livekit: the room the kiosk's client is in"),
    livekit_url: str | None = typer.Option(
        None, "--livekit-url", help="livekit: server URL (env LIVEKIT_URL)"
    ),
    attend: str = typer.Option("first", "--attend", help="livekit: first | speaker | identity:NAME"),
) -> None:
    """Run the avatar for one kiosk and bridge it to MQTT.

    Publishes status (retained, last will offline), state (retained), transcript, metrics, events and
    error under the topic prefix; takes cmd/say, cmd/persona, cmd/session/start, cmd/session/end,
    cmd/presence and cmd/mute. Credentials come only from the environment or a file.
    """
    from pydantic import SecretStr, ValidationError

    from avatar_core.config import AppSettings
    from integrations.cli.persona import load_or_exit
    from integrations.mqtt.bridge import MqttSettings
    from integrations.mqtt.kiosk import run_kiosk

    if transport not in TRANSPORTS:
        raise _fail(f"--transport {transport!r}: use one of {', '.join(TRANSPORTS)}")
    password = _password(password_file)
    try:
        settings = MqttSettings(
            broker=broker,
            kiosk_id=kiosk_id,
            topic_prefix=topic_prefix,
            username=username,
            password=SecretStr(password) if password is not None else None,
            tls=tls,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            buffer=buffer,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}".replace("Value error, ", "")
            for e in exc.errors(include_url=False)
        )
        raise _fail(problems) from None
    name = persona_name or AppSettings().persona
    persona = load_or_exit(name)
    session_host: SessionHost
    if transport == "files":
        from integrations.mqtt.hosts import FilesHost

        if user_audio is None:
            raise _fail("--transport files needs --user-audio (the visitor's recording)")
        for path in (user_audio, user_video):
            if path is not None and not path.is_file():
                raise _fail(f"no such file: {path}")
        session_host = FilesHost(user_audio, out_dir, user_video, seed=seed)
    elif transport == "livekit":
        session_host = _livekit_host(room, livekit_url, attend)
    else:
        from integrations.mqtt.hosts import BrowserHost

        session_host = BrowserHost(host, port)
    from avatar_core.bundled import MissingModelError
    from integrations.llm.local_server import LocalServerError

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_kiosk(settings, session_host, persona, name))
    except (OSError, LocalServerError, MissingModelError) as exc:  # e.g. the page's port is taken
        raise _fail(f"the kiosk stopped: {exc}") from None


def register(app: typer.Typer) -> None:
    """Add ``kiosk`` to the top-level app."""
    app.command("kiosk")(kiosk)
