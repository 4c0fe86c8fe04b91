"""The ``dyad`` command line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from avatar_core.config import AppSettings
from integrations.cli import chat, dialogue, doctor, kiosk, livekit, persona, render, train, vocoder
from integrations.cli.logs import configure_logging
from integrations.lifecycle import default_max_sessions, prepare_process

app = typer.Typer(
    name="dyad",
    help="Real-time conversational avatars: a talking, listening face from one text-to-speech+motion model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(persona.app, name="persona")
app.command("doctor")(doctor.doctor)
render.register(app)
kiosk.register(app)
dialogue.register(app)
chat.register(app)
app.add_typer(livekit.app, name="livekit")
app.add_typer(train.app, name="train")
app.add_typer(vocoder.app, name="vocoder")


@app.callback()
def main_options(
    log_level: str = typer.Option(
        None, "--log-level", help="DEBUG, INFO, WARNING or ERROR (env DYAD_LOG_LEVEL)", show_default=False
    ),
    log_json: bool = typer.Option(None, "--log-json", help="log one JSON object a line (env DYAD_LOG_JSON)"),
) -> None:
    """Global options; they go before the command: `dyad --log-level DEBUG doctor`."""
    settings = AppSettings()
    level = (log_level or settings.log_level).upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise typer.BadParameter(
            f"{log_level!r}: use DEBUG, INFO, WARNING or ERROR", param_hint="--log-level"
        )
    configure_logging(level, settings.log_json if log_json is None else log_json)


@app.command()
def converse(
    user_audio: Path = typer.Option(..., "--user-audio", help="the user's side: WAV or any audio/video file"),
    user_video: Path | None = typer.Option(None, "--user-video", help="the user's camera, shown beside"),
    persona_name: str | None = typer.Option(None, "--persona", help="persona name or YAML path"),
    out: Path = typer.Option(Path("conversation.mp4"), "--out", help="MP4 to write"),
    transcript: Path = typer.Option(Path("conversation.json"), "--transcript", help="JSON transcript"),
    seed: int = typer.Option(0, "--seed", help="same seed + same input = same output"),
) -> None:
    """Run a whole conversation on recorded user audio (and video) into an MP4 and a JSON transcript.

    Runs on a virtual clock: faster than real time and deterministic for a seed.
    """
    from agent.persona import PersonaError
    from avatar_core.bundled import MissingModelError
    from avatar_core.media import MediaError
    from integrations.cli.persona import load_or_exit
    from integrations.files.converse import converse as run_conversation
    from integrations.llm.local_server import LocalServerError
    from integrations.stack import StackError

    console = Console(stderr=True, soft_wrap=True)
    for path in (user_audio, user_video):
        if path is not None and not path.is_file():
            console.print(f"[bold red]no such file[/]: {path}", highlight=False)
            raise typer.Exit(2)
    persona = load_or_exit(persona_name or AppSettings().persona)
    try:
        result = asyncio.run(run_conversation(persona, user_audio, out, transcript, user_video, seed=seed))
    except (MediaError, StackError, LocalServerError, MissingModelError, PersonaError) as exc:
        console.print(f"[bold red]cannot run the conversation[/]: {exc}", highlight=False)
        raise typer.Exit(2) from None
    table = Table("turn", "user", "avatar", "voice to voice (ms)", title=f"{out} ({result.duration_s:.1f} s)")
    for turn in result.turns:
        latency = (turn.get("latency_ms") or {}).get("first_audio")
        user, agent = turn.get("user", {}).get("text", ""), turn.get("agent", {}).get("text", "")
        table.add_row(str(turn["turn"]), user, agent, "-" if latency is None else f"{latency:.0f}")
    Console().print(table)
    Console().print(f"wrote {out} and {transcript}", highlight=False)


@app.command()
def serve(
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="address to listen on; the default serves only this machine. --host 0.0.0.0 lets anyone who "
        "can reach it talk to the avatar (no login, no TLS): put a TLS proxy with authentication in front",
    ),
    port: int = typer.Option(8080, "--port", help="port to listen on"),
    persona_name: str | None = typer.Option(None, "--persona", help="persona name or YAML path"),
    max_sessions: int = typer.Option(
        default_max_sessions(), "--max-sessions", min=1, help="browser tabs served at once (one per core)"
    ),
    ice_server: list[str] = typer.Option(
        [],
        "--ice-server",
        envvar="DYAD_ICE_SERVERS",
        help="STUN/TURN URL for pages on other networks (repeat for more; TURN credentials from "
        "DYAD_TURN_USERNAME/DYAD_TURN_PASSWORD). Default none: nothing leaves the machine",
    ),
) -> None:
    """Talk to the avatar in a local browser page over WebRTC (open the URL it prints)."""
    from avatar_core.bundled import MissingModelError
    from integrations.cli.persona import load_or_exit
    from integrations.llm.local_server import LocalServerError
    from integrations.webrtc.ice import IceConfigError, ice_servers
    from integrations.webrtc.server import main as serve_main

    persona = load_or_exit(persona_name or AppSettings().persona)
    try:
        servers = ice_servers(ice_server)
    except IceConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ice-server") from None
    try:
        serve_main(host, port, persona, max_sessions, servers)
    except (LocalServerError, MissingModelError, OSError) as exc:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]cannot serve[/]: {exc}", highlight=False)
        raise typer.Exit(2) from None


def main() -> None:
    """Console-script entry point."""
    prepare_process()
    app()


if __name__ == "__main__":
    main()
