"""Torch helpers shared by the training loops of the joint model and the vocoder.

Device choice and seeding, the warm-up + cosine learning rate, atomic checkpoint writes and checked
reads, resuming from a run's ``last.pt``, the weights' moving average, the hardware string a checkpoint
records, the loss CSV and the time limit.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from avatar_core.files import replacing
from avatar_core.training_config import TrainSettings

log = logging.getLogger(__name__)

# What an inference-only copy of a run's checkpoint keeps besides the network (no optimiser state).
EXPORT_KEYS = ("step", "data", "train_config", "wall_s", "hardware")


def pick_device(choice: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device: cuda was asked for but torch sees no GPU; use device: auto or cpu")
        return torch.device("cuda")
    return torch.device("cpu")


def setup(train: TrainSettings) -> torch.device:
    """The run's device; on CPU the thread count (0 keeps torch's default); torch's seed."""
    device = pick_device(train.device)
    if device.type == "cpu" and train.threads:
        torch.set_num_threads(train.threads)
    torch.manual_seed(train.seed)
    return device


def warmup_cosine_lr(step: int, train: TrainSettings, time_used: float = 0.0) -> float:
    """Linear warm-up to ``lr``, then a cosine decay to a tenth of it at ``steps``.

    ``time_used``: the fraction of the run's time limit spent; the decay follows whichever of steps and
    time is further along, so a run stopped by its time limit ends at the low learning rate too.
    """
    if step < train.warmup_steps:
        return train.lr * (step + 1) / train.warmup_steps
    progress = (step - train.warmup_steps) / max(1, train.steps - train.warmup_steps)
    progress = max(progress, time_used)
    return train.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def write_checkpoint(path: Path, state: Mapping[str, object]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a crash never leaves half a file."""
    with replacing(path) as tmp:
        torch.save(dict(state), tmp)


def read_checkpoint(path: Path, device: torch.device | str | None, what: str) -> object:
    """``torch.load`` a checkpoint; an unreadable file raises ValueError naming it and ``what`` it is."""
    try:
        return torch.load(path, map_location=device or "cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path}: cannot read the {what} ({exc})") from exc


def weight_average(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights (decay per step), or None for ``decay`` 0.

    Its first ``update_parameters`` copies the network; each later one moves the average ``1 - decay``
    of the way to it. Buffers follow the network. docs/design.md, "Training on a borrowed GPU".
    """
    if not decay:
        return None
    ema = get_ema_multi_avg_fn(decay)  # type: ignore[no-untyped-call]
    return AveragedModel(model, multi_avg_fn=ema, use_buffers=False)


def resume(
    last: Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    seed: int,
    device: torch.device,
    averaged: AveragedModel | None = None,
) -> tuple[int, float, np.random.Generator] | None:
    """Continue from ``last`` when it exists: loads the network and optimiser in place and returns the
    step, the wall seconds spent so far and the batch generator for that step; None for a fresh run.

    A checkpoint with a weight average keeps it as ``state_dict`` (the network to use) and the trained
    weights as ``train_state_dict``; ``averaged`` continues from the former, ``model`` from the latter.
    """
    if not last.exists():
        return None
    state = torch.load(last, map_location=device, weights_only=False)
    model.load_state_dict(state.get("train_state_dict", state["state_dict"]))
    if averaged is not None and "train_state_dict" in state:
        averaged.module.load_state_dict(state["state_dict"])
        averaged.n_averaged.fill_(1)
    opt.load_state_dict(state["optimizer"])
    step, wall = int(state["step"]), float(state.get("wall_s", 0.0))
    log.info("resuming %s at step %d", last, step)
    return step, wall, np.random.default_rng([seed, step])


def start_from(model: torch.nn.Module, start: torch.nn.Module, init: Path) -> None:
    """Fine-tuning: a new run takes the weights of ``start``, the network read from the checkpoint
    ``init``, which must be built as ``model`` is (both have a ``config``)."""
    if getattr(start, "config", None) != getattr(model, "config", None):
        raise RuntimeError(
            f"{init}: its network ({getattr(start, 'config', None)}) is not this config's "
            f"({getattr(model, 'config', None)})"
        )
    model.load_state_dict(start.state_dict())
    log.info("fine-tuning from %s", init)


def hardware_name(device: torch.device) -> str:
    """What the checkpoint records it was trained on: the GPU's name or ``CPU x<threads>``."""
    return torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU x{torch.get_num_threads()}"


class LossLog:
    """``loss.csv`` of a run: a header on creation (kept when resuming), then one row per logged step.

    :meth:`add` sums each step's losses; :meth:`write` appends their means since the last row: ``step``,
    each loss key, ``lr``, the ``extra`` columns, ``wall_s``.
    """

    def __init__(self, path: Path, keys: tuple[str, ...], extra: tuple[str, ...] = ()) -> None:
        self.path, self.keys, self.extra = path, keys, extra
        self._sums = dict.fromkeys(keys, 0.0)
        self._count = 0
        if not path.exists():
            path.write_text("step," + ",".join((*keys, "lr", *extra, "wall_s")) + "\n")

    def add(self, values: Mapping[str, float]) -> None:
        """Count one step's losses (one value per key)."""
        for key in self.keys:
            self._sums[key] += values[key]
        self._count += 1

    def write(self, step: int, lr: float, wall_s: float, extra: tuple[object, ...] = ()) -> dict[str, float]:
        """Append one row (``extra`` in the header's order) and start new means; returns the means."""
        means = {k: v / self._count for k, v in self._sums.items()}
        values = ",".join(f"{means[k]:.5f}" for k in self.keys)
        more = "".join(f"{v}," for v in extra)
        with open(self.path, "a") as f:
            f.write(f"{step},{values},{lr:.6f},{more}{wall_s:.1f}\n")
        self._sums = dict.fromkeys(self.keys, 0.0)
        self._count = 0
        return means


def out_of_time(started: float, limit_min: float) -> bool:
    """Whether a run begun at ``started`` (``time.monotonic()``) has used its ``limit_min`` (0 = none)."""
    return bool(limit_min) and (time.monotonic() - started) / 60 >= limit_min


class Run:
    """The loop's bookkeeping after each optimiser step: the step count, the learning rate, the loss
    log, checkpoints every ``checkpoint_every`` steps (and at the end or the time limit), the clock."""

    def __init__(
        self,
        train: TrainSettings,
        opt: torch.optim.Optimizer,
        loss_log: LossLog,
        save: Callable[[dict[str, object]], None],
        resumed: tuple[int, float, np.random.Generator] | None,
        device: torch.device,
    ) -> None:
        self.train, self.opt, self.loss_log, self.save = train, opt, loss_log, save
        self.step, self.wall = (resumed[0], resumed[1]) if resumed else (0, 0.0)
        self.hardware = hardware_name(device)
        self.started = time.monotonic()

    @property
    def done(self) -> bool:
        """Whether ``train.steps`` are reached."""
        return self.step >= self.train.steps

    def wall_s(self) -> float:
        """Seconds of training so far, over all the runs that resumed each other."""
        return self.wall + time.monotonic() - self.started

    def time_used(self) -> float:
        """The fraction of this invocation's ``time_limit_min`` spent (0 without a limit)."""
        limit = self.train.time_limit_min
        return (time.monotonic() - self.started) / 60 / limit if limit else 0.0

    def set_lr(self) -> None:
        """The learning rate of the coming step on every parameter group."""
        for group in self.opt.param_groups:
            group["lr"] = warmup_cosine_lr(self.step, self.train, self.time_used())

    def checkpoint(self) -> None:
        """Call ``save`` with the run's part of the checkpoint: optimiser, step, wall seconds, hardware."""
        self.save(
            {
                "optimizer": self.opt.state_dict(),
                "step": self.step,
                "wall_s": self.wall_s(),
                "hardware": self.hardware,
            }
        )

    def end_step(
        self,
        values: Mapping[str, float],
        progress: Callable[[int, int, dict[str, float]], None] | None,
        extra: tuple[object, ...] = (),
    ) -> bool:
        """Count a finished step with its losses; log, report and checkpoint when due. True: stop now."""
        train = self.train
        self.step += 1
        self.loss_log.add(values)
        if self.step % train.log_every == 0 or self.step == train.steps:
            lr = float(self.opt.param_groups[0]["lr"])
            means = self.loss_log.write(self.step, lr, self.wall_s(), extra)
            if progress:
                progress(self.step, train.steps, means)
        stop = out_of_time(self.started, train.time_limit_min)
        if self.step % train.checkpoint_every == 0 or self.step == train.steps or stop:
            self.checkpoint()
        if stop:
            log.info("time limit reached at step %d", self.step)
        return stop
