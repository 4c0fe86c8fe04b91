"""``dyad vocoder fit|rtf``: the neural vocoder of the joint model's speech features."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

app = typer.Typer(help="Train and measure the neural vocoder (features -> audio).", no_args_is_help=True)
log = logging.getLogger(__name__)


def _fail(message: str) -> typer.Exit:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error[/]: {message}", highlight=False)
    return typer.Exit(2)


@app.command("fit")
def fit(
    config: Path = typer.Option(Path("configs/vocoder/small.yaml"), "--config", help="vocoder YAML"),
    data_dir: Path = typer.Option(..., "--data", help="dataset folder from `dyad train data`"),
    out: Path = typer.Option(..., "--out", help="run folder (resumed if it has last.pt)"),
    steps: int | None = typer.Option(None, "--steps", help="override train.steps"),
    time_limit_min: float | None = typer.Option(None, "--time-limit-min", help="stop after N minutes"),
) -> None:
    """Train the vocoder on a dataset's stored speech: resumable checkpoints and loss.csv in --out."""
    from avatar_core.data.samples import DatasetError
    from avatar_core.vocoder.config import VocoderConfigError, load_vocoder_config
    from avatar_core.vocoder.train import fit as run_fit

    try:
        fit_config = load_vocoder_config(config)
    except VocoderConfigError as exc:
        raise _fail(str(exc)) from None
    overrides: dict[str, object] = {}
    if steps is not None:
        overrides["steps"] = steps
    if time_limit_min is not None:
        overrides["time_limit_min"] = time_limit_min
    if overrides:
        fit_config = fit_config.model_copy(update={"train": fit_config.train.model_copy(update=overrides)})
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    with progress as bar:
        task = bar.add_task("vocoder", total=fit_config.train.steps, status="")

        def report(step: int, total: int, losses: dict[str, float]) -> None:
            bar.update(task, completed=step, status=" ".join(f"{k} {v:.3f}" for k, v in losses.items()))

        try:
            last = run_fit(data_dir, out, fit_config, report)
        except (DatasetError, RuntimeError) as exc:
            raise _fail(str(exc)) from None
    Console().print(f"checkpoint: {last}")


@app.command("export")
def export(
    checkpoint: Path = typer.Argument(..., help="a run's last.pt"),
    dst: Path = typer.Argument(..., help="where to write the inference-only copy"),
) -> None:
    """Write an inference-only copy of a vocoder checkpoint (no optimiser state)."""
    from avatar_core.vocoder.train import export_checkpoint

    try:
        export_checkpoint(checkpoint, dst)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    Console().print(f"{dst}: {dst.stat().st_size / 1e6:.1f} MB")


@app.command("rtf")
def rtf(
    checkpoint: Path = typer.Argument(..., help="a vocoder checkpoint (last.pt of `dyad vocoder fit`)"),
    seconds: float = typer.Option(10.0, "--seconds", help="length of the measured utterance"),
    threads: int = typer.Option(1, "--threads", help="torch threads"),
) -> None:
    """Real-time factor of the vocoder on this machine (seconds of compute per second of audio), JSON."""
    from avatar_core.vocoder.infer import NeuralVocoder

    try:
        vocoder = NeuralVocoder.load(checkpoint, threads=threads)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    print(json.dumps(vocoder.measure_rtf(seconds)))
