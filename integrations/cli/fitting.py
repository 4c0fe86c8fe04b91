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


# The options every ``fit`` command takes besides its --config and --out.
DATA_OPTION = typer.Option(..., "--data", help="dataset folder from `dyad train data`")
STEPS_OPTION = typer.Option(None, "--steps", help="override train.steps")
TIME_LIMIT_OPTION = typer.Option(
    None, "--time-limit-min", help="stop after this many minutes (the learning rate decays over them)"
)
INIT_OPTION = typer.Option(
    None, "--init", help="start a new run from this checkpoint's weights (fine-tuning on more data)"
)


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; the caller raises the returned exit (status 2)."""
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error[/]: {message}", highlight=False)
    return typer.Exit(2)


def checked_init(init: Path | None) -> Path | None:
    """``--init`` when it names a file; otherwise an ``error:`` exit."""
    if init is not None and not init.is_file():
        raise fail(f"--init {init}: no such checkpoint; give a run's last.pt or an exported copy")
    return init


CHECKPOINT_ARGUMENT = typer.Argument(..., help="a run's last.pt")
EXPORT_ARGUMENT = typer.Argument(..., help="where to write the inference-only copy")


def run_export(export_checkpoint: Callable[[Path, Path], None], checkpoint: Path, dst: Path) -> None:
    """``dyad train|vocoder export``: write the inference-only copy and say how big it is."""
    try:
        export_checkpoint(checkpoint, dst)
    except ValueError as exc:
        raise fail(str(exc)) from None
    Console().print(f"{dst}: {dst.stat().st_size / 1e6:.1f} MB")


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


def run_fit(
    label: str,
    load: Callable[[Path], _Fit],
    fit: FitFn[_Fit],
    config: Path,
    data_dir: Path,
    out: Path,
    steps: int | None,
    time_limit_min: float | None,
) -> None:
    """Read the YAML ``config`` with ``load``, apply the overrides and run ``fit`` under a progress bar
    showing its losses; a bad config, dataset or device becomes an ``error:`` line (exit 2)."""
    from avatar_core.data.samples import DatasetError

    try:
        fit_config = with_overrides(load(config), steps, time_limit_min)
    except ValueError as exc:  # the loaders' ModelConfigError / VocoderConfigError name the field
        raise fail(str(exc)) from None
    with progress_bar() as bar:
        task = bar.add_task(label, total=fit_config.train.steps, status="")

        def report(step: int, total: int, losses: dict[str, float]) -> None:
            bar.update(task, completed=step, status=" ".join(f"{k} {v:.3f}" for k, v in losses.items()))

        try:
            last = fit(data_dir, out, fit_config, report)
        except (DatasetError, RuntimeError) as exc:
            raise fail(str(exc)) from None
    Console().print(f"checkpoint: {last}")
