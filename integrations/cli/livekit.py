"""``dyad livekit worker|join``: the avatar as a participant in LiveKit rooms."""

from __future__ import annotations

import typer

from integrations.cli.unavailable import PENDING, unavailable

app = typer.Typer(help="Join LiveKit rooms as an AI participant.", no_args_is_help=True)


@app.command("worker", context_settings=PENDING)
def worker() -> None:
    """Run a livekit-agents worker that a LiveKit server dispatches rooms to."""
    unavailable("livekit worker", 6, "LiveKit rooms")


@app.command("join", context_settings=PENDING)
def join() -> None:
    """Join one LiveKit room directly."""
    unavailable("livekit join", 6, "LiveKit rooms")
