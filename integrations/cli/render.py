"""``dyad render``: text -> MP4 with the joint model (or the cascade)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from rich.console import Console

from agent.persona import PersonaError, load_persona
from avatar_core.config import AppSettings


def render(
    text: str = typer.Option(..., "--text", help="what the avatar says"),
    out: Path = typer.Option(Path("out.mp4"), "--out", "-o", help="MP4 file to write"),
    persona: str | None = typer.Option(
        None, "--persona", help="persona name or YAML path (default: DYAD_PERSONA)"
    ),
    mode: str | None = typer.Option(
        None, "--mode", help="joint or cascade (default: the persona's voice.mode)"
    ),
) -> None:
    """Render speech and a talking face from text into an MP4 (H.264 + AAC); prints one JSON line."""
    from integrations.files.render import render as run

    err = Console(stderr=True, soft_wrap=True)
    if mode not in (None, "joint", "cascade"):
        err.print(f"[bold red]error[/]: --mode {mode!r}: use joint or cascade", highlight=False)
        raise typer.Exit(2)
    settings = AppSettings()
    try:
        chosen = load_persona(persona, settings=settings)
    except PersonaError as exc:
        err.print(f"[bold red]error[/]: {exc}", highlight=False)
        raise typer.Exit(2) from None
    try:
        result = asyncio.run(run(text, chosen, out, mode, settings))  # type: ignore[arg-type]
    except (ValueError, OSError) as exc:
        err.print(f"[bold red]error[/]: {exc}", highlight=False)
        raise typer.Exit(2) from None
    if mode is not None and result.mode != mode:
        err.print(
            f"[yellow]note[/]: rendered in {result.mode} mode (no joint-model checkpoint)", highlight=False
        )
    print(json.dumps(result.to_dict()))


def register(app: typer.Typer) -> None:
    """Add ``render`` to the top-level app."""
    app.command("render")(render)
