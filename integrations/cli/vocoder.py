"""``dyad vocoder fit|gta|export|rtf``: the neural vocoder of the joint model's speech features."""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import typer

from integrations.cli.fitting import (
    CHECKPOINT_ARGUMENT,
    DATA_OPTION,
    EXPORT_ARGUMENT,
    INIT_OPTION,
    STEPS_OPTION,
    TIME_LIMIT_OPTION,
    checked_init,
    fail,
    progress_bar,
    run_export,
    run_fit,
)

app = typer.Typer(help="Train and measure the neural vocoder (features -> audio).", no_args_is_help=True)
log = logging.getLogger(__name__)


@app.command("fit")
def fit(
    config: Path = typer.Option(Path("configs/vocoder/small.yaml"), "--config", help="vocoder YAML"),
    data_dir: Path = DATA_OPTION,
    out: Path = typer.Option(..., "--out", help="run folder (resumed if it has last.pt)"),
    steps: int | None = STEPS_OPTION,
    time_limit_min: float | None = TIME_LIMIT_OPTION,
    init: Path | None = INIT_OPTION,
    mix: list[Path] = typer.Option(
        [],
        "--mix",
        help="another dataset folder whose speaking samples join --data's (repeatable): the teacher's "
        "own features beside `dyad vocoder gta` data",
    ),
) -> None:
    """Train the vocoder on a dataset's stored speech: resumable checkpoints and loss.csv in --out."""
    from avatar_core.vocoder.config import load_vocoder_config
    from avatar_core.vocoder.train import fit as fit_vocoder

    for folder in mix:
        if not folder.is_dir():
            raise fail(
                f"--mix {folder}: no such folder; give a dataset from `dyad train data` or `dyad vocoder gta`"
            )
    fit_from = functools.partial(fit_vocoder, init=checked_init(init), mix=tuple(mix))
    run_fit("vocoder", load_vocoder_config, fit_from, config, data_dir, out, steps, time_limit_min)


@app.command("gta")
def gta(
    data_dir: Path = DATA_OPTION,
    out: Path = typer.Option(..., "--out", help="folder of the fine-tuning samples (resumed if it has some)"),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="joint-model checkpoint (default: the bundled one)"
    ),
    temperature: float | None = typer.Option(
        None, "--temperature", help="speech sampling temperature (default: the one dyad speaks with)"
    ),
    vocoder: Path | None = typer.Option(
        None,
        "--vocoder",
        help="the vocoder checkpoint to fine-tune, which must read what the joint model predicts"
        " (default: the bundled one for its features)",
    ),
) -> None:
    """Write the vocoder's fine-tuning data: the joint model's speech features for every speaking sample
    of --data, predicted with the teacher's durations so they line up with its audio."""
    from avatar_core.data.samples import DatasetError
    from avatar_core.model.checkpoint import ModelMissingError
    from avatar_core.model.gta import write_gta

    with progress_bar() as bar:
        task = bar.add_task("gta", total=None, status="")

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            written = write_gta(data_dir, out, checkpoint, temperature, report, vocoder)
        except (DatasetError, ModelMissingError, ValueError) as exc:
            raise fail(str(exc)) from None
    print(json.dumps({"written": written, "out": str(out)}))


@app.command("export")
def export(checkpoint: Path = CHECKPOINT_ARGUMENT, dst: Path = EXPORT_ARGUMENT) -> None:
    """Write an inference-only copy of a vocoder checkpoint (no optimiser state)."""
    from avatar_core.vocoder.train import export_checkpoint

    run_export(export_checkpoint, checkpoint, dst)


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
        raise fail(str(exc)) from None
    print(json.dumps(vocoder.measure_rtf(seconds)))
