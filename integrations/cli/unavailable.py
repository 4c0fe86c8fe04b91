"""The one message for a command whose issue has not landed yet."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console


def unavailable(command: str, issue: int, what: str) -> NoReturn:
    """Say that ``dyad COMMAND`` is not built yet and exit with code 2."""
    Console(stderr=True).print(
        f"[bold yellow]`dyad {command}` is not available yet[/]: it arrives with issue #{issue} ({what}).",
        highlight=False,
    )
    raise typer.Exit(2)
