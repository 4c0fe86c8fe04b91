"""What the ``fit`` commands share: the error line, the progress bar and the run with its overrides."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from avatar_core.training_config import SizedFitConfig

_Fit = TypeVar("_Fit", bound=SizedFitConfig)
FitFn = Callable[[Path, Path, _Fit, Callable[[int, int, dict[str, float]], None]], Path]


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; the caller raises the returned exit (status 2)."""
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error[/]: {message}", highlight=False)
    return typer.Exit(2)


def progress_bar() -> Progress:
    """A bar on stderr with a status text, elapsed and remaining time."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


def with_overrides(config: _Fit, steps: int | None, time_limit_min: float | None) -> _Fit:
    """``config`` with ``--steps`` and ``--time-limit-min`` applied to its ``train`` section."""
    overrides: dict[str, object] = {}
    if steps is not None:
        overrides["steps"] = steps
    if time_limit_min is not None:
        overrides["time_limit_min"] = time_limit_min
    if not overrides:
        return config
    return config.model_copy(update={"train": config.train.model_copy(update=overrides)})


def run_fit(label: str, fit: FitFn[_Fit], data_dir: Path, out: Path, config: _Fit) -> None:
    """Run a training loop under a progress bar showing its losses; its errors become ``error:`` lines."""
    from avatar_core.data.samples import DatasetError

    with progress_bar() as bar:
        task = bar.add_task(label, total=config.train.steps, status="")

        def report(step: int, total: int, losses: dict[str, float]) -> None:
            bar.update(task, completed=step, status=" ".join(f"{k} {v:.3f}" for k, v in losses.items()))

        try:
            last = fit(data_dir, out, config, report)
        except (DatasetError, RuntimeError) as exc:
            raise fail(str(exc)) from None
    Console().print(f"checkpoint: {last}")
