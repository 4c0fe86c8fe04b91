"""``dyad render``: text -> MP4 with the joint model."""

from __future__ import annotations

import typer

from integrations.cli.unavailable import PENDING, unavailable


def render() -> None:
    """Render speech and a talking face from text with the joint model into an MP4."""
    unavailable("render", 4, "the joint text -> speech + face-motion model")


def register(app: typer.Typer) -> None:
    """Add ``render`` to the top-level app."""
    app.command("render", context_settings=PENDING)(render)
