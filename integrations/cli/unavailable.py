"""The one message for a command whose issue has not landed yet."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

# Commands whose issue is still open take any arguments and say they are not built yet.
PENDING = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": ["-h", "--help"]}


def unavailable(command: str, issue: int, what: str) -> NoReturn:
    """Say that ``dyad COMMAND`` is not built yet and exit with code 2."""
    Console(stderr=True).print(
        f"[bold yellow]`dyad {command}` is not available yet[/]: it arrives with issue #{issue} ({what}).",
        highlight=False,
    )
    raise typer.Exit(2)
