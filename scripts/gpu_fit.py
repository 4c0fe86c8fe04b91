"""Train several joint-model configs at once on one GPU from a packed dataset; bring back their exports.

For a borrowed GPU machine that has torch, numpy, scipy, PyYAML and matplotlib but not dyad's other
dependencies (pydantic travels as wheels); docs/design.md, "Training on a borrowed GPU":

    dyad train pack --data ~/.cache/dyad/data/teacher5 --out .gpu/teacher5.npz    # here
    python scripts/gpu_fit.py --pack .gpu/teacher5.npz --out $OUT --minutes 8 \\
        tune=configs/model/gpu5-tune.yaml@avatar_core/assets/avflow/avflow.pt \\
        base=configs/model/gpu5-base.yaml                                          # there

Each ``NAME=CONFIG[@INIT]`` trains in its own process (one CUDA context each) for ``--minutes``, its
learning rate decayed over them, from scratch or fine-tuning the checkpoint ``INIT``. Then
``OUT/NAME.tar.gz`` holds the inference-only export ``NAME.pt``, ``loss.csv`` and ``loss.png``, and
``OUT/summary.json`` each run's steps, wall time and final losses. A run that outlives its time by
``--grace`` seconds is stopped and exported from its last checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tarfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class RunSpec:
    """One ``NAME=CONFIG[@INIT]`` argument."""

    name: str
    config: Path
    init: Path | None

    @classmethod
    def parse(cls, text: str) -> RunSpec:
        name, _, rest = text.partition("=")
        config, _, init = rest.partition("@")
        if not name or not config:
            raise argparse.ArgumentTypeError(f"{text!r}: use NAME=CONFIG or NAME=CONFIG@INIT")
        return cls(name, Path(config), Path(init) if init else None)


def _train(spec: RunSpec, data: Path, runs: Path, minutes: float, cpu_threads: int) -> None:
    """One run, in its own process: ``fit`` with the time limit, progress on stdout. A run that fails on
    the GPU is started again on ``cpu_threads`` CPU cores for the time left, so the lease is not lost."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {spec.name} %(message)s")
    from avatar_core.model.config import load_fit_config
    from avatar_core.model.train import fit

    started = time.monotonic()
    config = load_fit_config(spec.config)
    every = config.train.log_every * 20

    def report(step: int, _: int, losses: dict[str, float]) -> None:
        if step % every == 0:
            print(spec.name, step, " ".join(f"{k} {v:.3f}" for k, v in losses.items()), flush=True)

    def run(**train: object) -> None:
        fitted = config.model_copy(update={"train": config.train.model_copy(update=train)})
        fit(data, runs / spec.name, fitted, report, init=spec.init)

    try:
        run(time_limit_min=minutes)
    except RuntimeError:
        traceback.print_exc()
        left = minutes - (time.monotonic() - started) / 60
        if config.train.device == "cpu" or left < 1:
            raise
        print(f"{spec.name}: failed on the GPU; on {cpu_threads} CPU cores for {left:.1f} min", flush=True)
        shutil.rmtree(runs / spec.name, ignore_errors=True)
        run(time_limit_min=left, device="cpu", threads=cpu_threads)


def _last_row(csv_path: Path) -> dict[str, str]:
    """The last logged step of a run's ``loss.csv`` (empty when it logged none)."""
    if not csv_path.exists():
        return {}
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows[-1] if rows else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--pack", type=Path, required=True, help="a file from `dyad train pack`")
    parser.add_argument("--out", type=Path, required=True, help="where the exports and summary go")
    parser.add_argument("--minutes", type=float, required=True, help="training time of every run")
    parser.add_argument(
        "--grace",
        type=float,
        default=180.0,
        help="seconds past --minutes before a stop; covers what a run does before its clock starts (loading "
        "the data, the head-pose VAE of a fresh run: about 95 s for 3 h of data on an H200)",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_fit"), help="data and run folders")
    parser.add_argument("runs", nargs="+", type=RunSpec.parse, help="NAME=CONFIG[@INIT]")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch

    from avatar_core.data.pack import unpack
    from avatar_core.model.train import export_checkpoint

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"torch {torch.__version__}, {gpu}", flush=True)
    started = time.monotonic()
    data = args.work / args.pack.stem  # the checkpoints record this folder name
    count = unpack(args.pack, data)
    print(f"unpacked {count} samples in {time.monotonic() - started:.1f} s", flush=True)
    runs = args.work / "runs"
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // len(args.runs))
    procs = {
        spec.name: context.Process(target=_train, args=(spec, data, runs, args.minutes, threads))
        for spec in args.runs
    }
    for proc in procs.values():
        proc.start()
    deadline = time.monotonic() + args.minutes * 60 + args.grace
    for name, proc in procs.items():
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            print(f"{name}: still running at the deadline; stopped", flush=True)
            proc.terminate()
            proc.join()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, object]] = {}
    for spec in args.runs:
        folder = runs / spec.name
        last = folder / "last.pt"
        row = _last_row(folder / "loss.csv")
        result: dict[str, object] = {"config": str(spec.config), "init": str(spec.init or "")}
        result.update(exit_code=procs[spec.name].exitcode, last=row)
        if last.exists():
            export_checkpoint(last, folder / f"{spec.name}.pt")
            with tarfile.open(args.out / f"{spec.name}.tar.gz", "w:gz") as tar:
                for file in (f"{spec.name}.pt", "loss.csv", "loss.png"):
                    if (folder / file).exists():
                        tar.add(folder / file, arcname=file)
        results[spec.name] = result
        print(spec.name, json.dumps(result), flush=True)
    summary = {"gpu": gpu, "torch": torch.__version__, "samples": count, "runs": results}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
