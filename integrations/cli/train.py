"""``dyad train data|pack|unpack|fit|export|eval``: the joint model's dataset, training and evaluation."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import typer
from rich.console import Console

from avatar_core.config import KOKORO_VOICES, AppSettings
from avatar_core.model.config import EULER_STEPS
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

app = typer.Typer(help="Build the teacher dataset and train the joint model.", no_args_is_help=True)
log = logging.getLogger(__name__)


def _voices(value: str, option: str) -> tuple[str, ...]:
    voices = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in voices if v not in KOKORO_VOICES]
    if not voices or bad:
        raise fail(f"{option} {value!r}: use a comma-separated list of {', '.join(KOKORO_VOICES)}")
    return voices


@app.command("data")
def data(
    out: Path = typer.Option(..., "--out", help="dataset folder (created; an existing one is resumed)"),
    hours: float = typer.Option(1.0, "--hours", help="hours of audio to generate"),
    workers: int = typer.Option(1, "--workers", help="processes (one ONNX thread each)"),
    voices: str = typer.Option("jf_alpha", "--voices", help="the actor's Kokoro voices, comma-separated"),
    partner_voices: str = typer.Option(
        "jm_kumo,jf_nezumi,jf_gongitsune", "--partner-voices", help="voices of the simulated partner"
    ),
    seed: int = typer.Option(0, "--seed"),
    from_videos: Path | None = typer.Option(
        None, "--from-videos", help="convert talking-head videos of one person in this folder instead"
    ),
) -> None:
    """Generate the teacher dataset (Kokoro + procedural teacher), or convert talking-head videos."""
    if from_videos is not None:
        _from_videos(from_videos, out, workers)
        return
    from avatar_core.data import corpus
    from avatar_core.data.teacher import DataSpec, generate

    if workers < 1:
        raise fail(f"--workers {workers}: use 1 or more")
    spec = DataSpec(
        corpus.CORPUS_VERSION, _voices(voices, "--voices"), _voices(partner_voices, "--partner-voices"), seed
    )
    with progress_bar() as bar:
        task = bar.add_task("teacher data", total=hours, status="")

        def report(done: float, total: float) -> None:
            bar.update(task, completed=min(done, total), status=f"{done:.3f}/{total:g} h")

        try:
            count = generate(
                out, hours, corpus.split("train"), spec, AppSettings().cache_dir, workers, report
            )
        except ValueError as exc:
            raise fail(str(exc)) from None
    Console().print(f"{out}: {count} samples")


def _from_videos(folder: Path, out: Path, workers: int) -> None:
    from avatar_core.data.videos import convert_folder

    try:
        count = convert_folder(folder, out, AppSettings().cache_dir, workers)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    Console().print(f"{out}: {count} samples from {folder}")


@app.command("pack")
def pack(
    data_dir: Path = DATA_OPTION,
    out: Path = typer.Option(..., "--out", help="the file to write (.npz)"),
    config: Path | None = typer.Option(
        None, "--config", help="a configs/model/ YAML: pack the speech features it predicts (default: WORLD)"
    ),
) -> None:
    """Pack a dataset's training features (no audio) into one small file, to train on another machine."""
    from avatar_core.data.pack import pack as pack_features
    from avatar_core.data.samples import DatasetError
    from avatar_core.model.config import ModelConfigError, load_fit_config

    try:
        layout = "world"
        if config is not None:
            model = load_fit_config(config).model_config_()
            layout = model.name(model.speech)
        count, hours = pack_features(data_dir, out, layout)
    except (DatasetError, ModelConfigError) as exc:
        raise fail(str(exc)) from None
    Console().print(f"{out}: {count} samples, {hours:.2f} h, {out.stat().st_size / 1e6:.1f} MB")


@app.command("unpack")
def unpack(
    src: Path = typer.Argument(..., help="a file from `dyad train pack`"),
    out: Path = typer.Option(..., "--out", help="dataset folder to write (created)"),
) -> None:
    """Write a packed dataset back as a folder that `dyad train fit` reads."""
    from avatar_core.data.pack import unpack as unpack_features
    from avatar_core.data.samples import DatasetError

    try:
        count = unpack_features(src, out)
    except DatasetError as exc:
        raise fail(str(exc)) from None
    Console().print(f"{out}: {count} samples")


@app.command("fit")
def fit(
    config: Path = typer.Option(Path("configs/model/base.yaml"), "--config", help="model/training YAML"),
    data_dir: Path = DATA_OPTION,
    out: Path = typer.Option(Path("runs/avflow"), "--out", help="run folder (resumed if it has last.pt)"),
    steps: int | None = STEPS_OPTION,
    time_limit_min: float | None = TIME_LIMIT_OPTION,
    init: Path | None = INIT_OPTION,
) -> None:
    """Train the joint model: resumable checkpoints, loss.csv and loss.png in --out."""
    from avatar_core.model.config import load_fit_config
    from avatar_core.model.train import fit as fit_model

    fit_from = functools.partial(fit_model, init=checked_init(init))
    run_fit("training", load_fit_config, fit_from, config, data_dir, out, steps, time_limit_min)


@app.command("export")
def export(checkpoint: Path = CHECKPOINT_ARGUMENT, dst: Path = EXPORT_ARGUMENT) -> None:
    """Write an inference-only copy of a joint-model checkpoint (no optimiser state)."""
    from avatar_core.model.train import export_checkpoint

    run_export(export_checkpoint, checkpoint, dst)


@app.command("eval")
def evaluate(
    out: Path = typer.Option(Path("runs/eval"), "--out", help="folder for report.json, report.md and plots"),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="default: the bundled avatar_core/assets/avflow"
    ),
    limit: int = typer.Option(40, "--limit", help="held-out sentences to use (0 = all)"),
    steps: int = typer.Option(EULER_STEPS, "--steps", help="Euler steps of the joint model"),
    voices: str = typer.Option(
        "", "--voices", help="comma-separated speakers to evaluate (default: all the checkpoint's)"
    ),
    vocoder: str = typer.Option(
        "neural", "--vocoder", help="neural (the bundled network) or world (pyworld)"
    ),
) -> None:
    """Evaluate teacher, representation ceiling, dyad joint and dyad cascade side by side on the held-out
    split, per voice."""
    from avatar_core.data import corpus
    from avatar_core.eval.run import evaluate as run_eval
    from avatar_core.model.inference import ModelMissingError

    sentences = corpus.split("heldout")
    if limit > 0:
        sentences = sentences[:limit]
    with progress_bar() as bar:
        task = bar.add_task("evaluating", total=len(sentences), status="")

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, status=f"{done}/{total} sentences")

        try:
            table = run_eval(
                sentences,
                out,
                checkpoint,
                AppSettings().cache_dir,
                steps,
                voices=_voices(voices, "--voices") if voices else None,
                progress=report,
                details={
                    "command": f"dyad train eval --limit {limit} --steps {steps} --vocoder {vocoder}"
                    + (f" --voices {voices}" if voices else "")
                },
                vocoder=vocoder,
            )
        except (ModelMissingError, ValueError) as exc:
            raise fail(str(exc)) from None
    Console().print((out / "report.md").read_text(encoding="utf-8"))
    log.info("evaluation: %s", table)
