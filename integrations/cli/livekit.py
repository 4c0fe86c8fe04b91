"""``dyad livekit worker|join|dialogue``: avatars as participants in LiveKit rooms."""

from __future__ import annotations

import asyncio
import contextlib
import os

import typer
from rich.console import Console

from avatar_core.config import AppSettings
from integrations.lifecycle import default_max_sessions

app = typer.Typer(help="Join LiveKit rooms as an AI participant.", no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)


def _fail(what: str, exc: BaseException) -> typer.Exit:
    err.print(f"[bold red]{what}[/]: {exc}", highlight=False)
    return typer.Exit(2)


def _policy(attend: str) -> str:
    from integrations.livekit.attendee import AttendPolicy

    try:
        AttendPolicy.parse(attend)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--attend") from None
    return attend


@app.command("worker")
def worker(
    persona_name: str | None = typer.Option(
        None, "--persona", help="default persona; a room's dispatch or room metadata can name another"
    ),
    url: str | None = typer.Option(None, "--url", help="LiveKit server URL (env LIVEKIT_URL)"),
    max_sessions: int = typer.Option(
        default_max_sessions(), "--max-sessions", min=1, help="rooms at once (one per core)"
    ),
    idle_processes: int = typer.Option(1, "--idle-processes", min=0, help="room processes kept prewarmed"),
    agent_name: str = typer.Option(
        "", "--agent-name", help="explicit dispatch only: rooms must ask for this agent name"
    ),
    attend: str = typer.Option("first", "--attend", help="first | speaker | identity:NAME"),
    health_port: int = typer.Option(
        8081, "--health-port", min=0, help="HTTP health check port; 0: any free one (several per host)"
    ),
    dev: bool = typer.Option(False, "--dev", help="development mode: debug logs, no drain on stop"),
) -> None:
    """Run a livekit-agents worker that a LiveKit server dispatches rooms to.

    Needs LIVEKIT_API_KEY and LIVEKIT_API_SECRET. Start as many workers as you like, on as many machines:
    the server balances rooms across them by reported load.
    """
    from avatar_core.bundled import MissingModelError
    from integrations.cli.persona import load_or_exit
    from integrations.livekit.worker import WorkerConfig, run_worker
    from integrations.llm.local_server import LocalServerError

    settings = AppSettings()
    name = persona_name or settings.persona
    load_or_exit(name)
    missing = [v for v in ("LIVEKIT_API_KEY", "LIVEKIT_API_SECRET") if not os.environ.get(v)]
    if not (url or os.environ.get("LIVEKIT_URL")):
        missing.insert(0, "LIVEKIT_URL (or --url)")
    if missing:
        err.print(
            f"[bold red]cannot start the worker[/]: set {', '.join(missing)} "
            "(livekit-server --dev: LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=devkey "
            "LIVEKIT_API_SECRET=secret)",
            highlight=False,
        )
        raise typer.Exit(2)
    config = WorkerConfig(
        persona=name,
        max_sessions=max_sessions,
        idle_processes=idle_processes,
        attend=_policy(attend),
        agent_name=agent_name,
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_worker(config, url=url, health_port=health_port, dev=dev))
    except (LocalServerError, MissingModelError, ValueError, OSError) as exc:
        raise _fail("the worker stopped", exc) from None


@app.command("join")
def join(
    room: str = typer.Option(..., "--room", help="the room to join", show_default=False),
    url: str | None = typer.Option(None, "--url", help="LiveKit server URL (env LIVEKIT_URL)"),
    identity: str | None = typer.Option(
        None, "--identity", help="participant identity (default: the persona's livekit_identity)"
    ),
    persona_name: str | None = typer.Option(None, "--persona", help="persona name or YAML path"),
    token: str | None = typer.Option(
        None, "--token", help="a join token; without it one is minted from LIVEKIT_API_KEY/SECRET"
    ),
    attend: str = typer.Option("first", "--attend", help="first | speaker | identity:NAME"),
) -> None:
    """Join one LiveKit room directly and stay until Ctrl+C or the room closes."""
    from agent.persona import PersonaError
    from avatar_core.bundled import MissingModelError
    from integrations.cli.persona import load_or_exit
    from integrations.livekit.attendee import AttendPolicy
    from integrations.livekit.join import JoinError
    from integrations.livekit.join import join as join_room
    from integrations.livekit.tokens import TokenError
    from integrations.llm.local_server import LocalServerError
    from integrations.stack import StackError

    settings = AppSettings()
    persona = load_or_exit(persona_name or settings.persona)
    policy = AttendPolicy.parse(_policy(attend))
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                join_room(
                    room, persona, url=url, token=token, identity=identity, policy=policy, settings=settings
                )
            )
    except TokenError as exc:
        raise _fail("cannot join", exc) from None
    except (JoinError, StackError, LocalServerError, MissingModelError, PersonaError, OSError) as exc:
        raise _fail("cannot join", exc) from None


@app.command("dialogue")
def dialogue(
    room: str = typer.Option(..., "--room", help="the room to join", show_default=False),
    personas: tuple[str, str] = typer.Option(
        ..., "--personas", help="the two personas (names or YAML paths); the first greets", show_default=False
    ),
    url: str | None = typer.Option(None, "--url", help="LiveKit server URL (env LIVEKIT_URL)"),
    attend: str = typer.Option("first", "--attend", help="first | speaker | identity:NAME"),
) -> None:
    """Two avatars join one room as two participants; a person is answered by the one they name.

    Each gets its own identity and token (minted from LIVEKIT_API_KEY/SECRET), state and transcripts;
    each listens to the person and to the other avatar.
    """
    from agent.persona import PersonaError
    from avatar_core.bundled import MissingModelError
    from integrations.cli.persona import load_or_exit
    from integrations.livekit.attendee import AttendPolicy
    from integrations.livekit.dialogue import DialogueError, dialogue_credentials, live_dialogue
    from integrations.livekit.join import JoinError
    from integrations.livekit.tokens import TokenError
    from integrations.llm.local_server import LocalServerError
    from integrations.stack import StackError

    settings = AppSettings()
    pair = [load_or_exit(name) for name in personas]
    policy = AttendPolicy.parse(_policy(attend))
    try:
        dialogue_credentials(room, pair, url=url)  # refuse before loading any model
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(live_dialogue(room, pair, url=url, policy=policy, settings=settings))
    except (TokenError, DialogueError, JoinError, StackError, LocalServerError, MissingModelError,
            PersonaError, OSError) as exc:  # fmt: skip
        raise _fail("cannot join", exc) from None
