"""``dyad train fit``: train the joint model on a dataset folder, resumably.

Stage 1 fits the head-pose VAE; stage 2 the whole model with flow matching. Every ``checkpoint_every``
steps ``last.pt`` is written atomically (model, optimiser, step, configs), ``loss.csv`` grows by the
logged steps and ``loss.png`` is redrawn; a run started again with the same ``--out`` continues from
``last.pt``. Uses a GPU when one is present (``device: auto``) and runs on CPU otherwise.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch

from avatar_core.data.samples import DatasetError, FloatArray, Sample, iter_samples
from avatar_core.model.avflow import FACE_DIM, AVFlow
from avatar_core.model.config import FitConfig, ModelConfig
from avatar_core.model.flow import Batch, losses
from avatar_core.training import (
    EXPORT_KEYS,
    LossLog,
    Run,
    read_checkpoint,
    resume,
    setup,
    start_from,
    weight_average,
    write_checkpoint,
)

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
LOSS_KEYS = ("total", "flow_speech", "flow_motion", "prior", "duration")
# What reads or writes speech features directly: new in a warm start to another representation.
SPEECH_LAYERS = ("in_speech.", "out_speech.proj.", "prior_speech.", "speech_mean", "speech_std")


def vocab_size() -> int:
    """Size of the phoneme vocabulary (the frontend's; the checkpoint records it)."""
    from avatar_core.text.frontend import VOCAB

    return len(VOCAB)


# -------------------------------------------------------------------------------------------------
# Data
# -------------------------------------------------------------------------------------------------


@dataclass
class TrainingSet:
    """All samples in memory (an hour of data is about 50 MB), with the speech features the model
    learns (``speech[i]`` of ``samples[i]``: ``Sample.speech_in`` the config's layout, so a mel model
    learns the log-mel frames of each sample's audio); the audio is not kept."""

    samples: list[Sample]
    speakers: list[int]
    speech: list[FloatArray]

    @classmethod
    def load(cls, folder: Path, config: ModelConfig) -> TrainingSet:
        voices, layout = config.voices, config.name(config.speech)
        samples, speech = [], []
        for sample in iter_samples(folder):
            speech.append(sample.speech_in(layout))
            samples.append(dataclasses.replace(sample, audio=None))
        if not samples:
            raise DatasetError(f"{folder} holds no samples; run `dyad train data --out {folder}` first")
        speakers = [voices.index(s.voice) if s.voice in voices else 0 for s in samples]
        missing = {s.voice for s in samples if s.role == "speak" and s.voice not in voices}
        if missing:
            raise DatasetError(f"{folder} has speech by {sorted(missing)}, which model.voices {voices} lacks")
        return cls(samples, speakers, speech)

    @property
    def hours(self) -> float:
        return sum(s.frames for s in self.samples) / 40.0 / 3600.0

    def batch(self, size: int, crop: int, rng: np.random.Generator) -> Batch:
        """A random batch of random ``crop``-frame windows (shorter samples are padded)."""
        chosen = rng.integers(0, len(self.samples), size)
        n = max(self.samples[i].tokens.size for i in chosen)
        t = min(crop, max(self.samples[i].frames for i in chosen))
        tokens = np.zeros((size, n), np.int64)
        durations = np.zeros((size, n), np.int64)
        offset = np.zeros(size, np.int64)
        speech = np.zeros((size, t, self.speech[0].shape[1]), np.float32)
        motion = np.zeros((size, t, self.samples[0].motion.shape[1]), np.float32)
        partner = np.zeros((size, t, self.samples[0].partner.shape[1]), np.float32)
        valid = np.zeros((size, t), bool)
        token_valid = np.zeros((size, n), bool)
        for row, i in enumerate(chosen):
            s = self.samples[i]
            tokens[row, : s.tokens.size] = s.tokens
            token_valid[row, : s.tokens.size] = True
            durations[row, : s.tokens.size] = s.durations
            start = int(rng.integers(0, max(1, s.frames - t + 1)))
            length = min(t, s.frames - start)
            offset[row] = start
            speech[row, :length] = self.speech[i][start : start + length]
            motion[row, :length] = s.motion[start : start + length]
            partner[row, :length] = s.partner[start : start + length]
            valid[row, :length] = True
        return Batch(
            tokens=torch.from_numpy(tokens),
            token_valid=torch.from_numpy(token_valid),
            durations=torch.from_numpy(durations),
            offset=torch.from_numpy(offset),
            speech=torch.from_numpy(speech),
            motion=torch.from_numpy(motion),
            partner=torch.from_numpy(partner),
            valid=torch.from_numpy(valid),
            speaker=torch.tensor([self.speakers[i] for i in chosen]),
        )


def set_speech_statistics(model: AVFlow, data: TrainingSet) -> None:
    """Per-channel mean and std of the speech features (std floored)."""
    speech = np.concatenate(data.speech)  # (sum T, F)
    model.speech_mean.copy_(torch.from_numpy(speech.mean(0)))
    model.speech_std.copy_(torch.from_numpy(np.maximum(speech.std(0), 1e-2)))


def set_statistics(model: AVFlow, data: TrainingSet) -> None:
    """Per-channel mean and std of the speech features and motion-tower targets (std floored)."""
    set_speech_statistics(model, data)
    with torch.no_grad():
        targets = torch.cat(
            [model.motion_targets(torch.from_numpy(s.motion)[None])[0] for s in data.samples]
        )  # (sum T, M)
    model.motion_mean.copy_(targets.mean(0))
    std = targets.std(0)
    std[:FACE_DIM] = std[:FACE_DIM].clamp(min=0.02)  # faint fields stay faint instead of being amplified
    model.motion_std.copy_(std.clamp(min=1e-2))


# -------------------------------------------------------------------------------------------------
# Checkpoints
# -------------------------------------------------------------------------------------------------


def save_checkpoint(path: Path, model: AVFlow, extra: dict[str, object]) -> None:
    """Write ``path`` atomically: the network, its config and whatever ``extra`` holds."""
    state = {
        "version": CHECKPOINT_VERSION,
        "model_config": model.config.model_dump(mode="json"),
        "vocab_size": model.embed.num_embeddings,
        "state_dict": model.state_dict(),
        **extra,
    }
    write_checkpoint(path, state)


def load_model(path: Path, device: torch.device | None = None) -> tuple[AVFlow, dict[str, object]]:
    """Rebuild the network stored in a checkpoint; returns it (eval mode) and the whole checkpoint dict."""
    state = read_checkpoint(path, device, "checkpoint")
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: not a dyad checkpoint (version {CHECKPOINT_VERSION} expected)")
    config = ModelConfig.model_validate(state["model_config"])
    model = AVFlow(config, int(state["vocab_size"]))
    model.load_state_dict(state["state_dict"])
    model.eval()
    return model, state


def export_checkpoint(src: Path, dst: Path) -> None:
    """A small inference-only copy (no optimiser state) for ``avatar_core/assets/``."""
    model, state = load_model(src)
    save_checkpoint(dst, model, {k: v for k, v in state.items() if k in EXPORT_KEYS})


# -------------------------------------------------------------------------------------------------
# The loop
# -------------------------------------------------------------------------------------------------


def plot_losses(csv_path: Path, png_path: Path) -> None:
    """Redraw the loss curves from ``loss.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    fig, axes = plt.subplots(1, len(LOSS_KEYS), figsize=(4 * len(LOSS_KEYS), 3))
    for ax, key in zip(axes, LOSS_KEYS, strict=True):
        ax.plot(steps, [float(r[key]) for r in rows])
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)


def fit(
    data_dir: Path,
    out: Path,
    config: FitConfig,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    init: Path | None = None,
) -> Path:
    """Train (or continue training) into ``out``; returns the path of ``last.pt``.

    ``init``: a new run starts from that checkpoint's weights, head-pose VAE and statistics (fine-tuning on
    more data) instead of from scratch; its network must be this config's, or differ only in the speech
    features it predicts (:func:`warm_start`). A resumed run ignores it.
    """
    out.mkdir(parents=True, exist_ok=True)
    train = config.train
    device = setup(train)
    model_config = config.model_config_()
    data = TrainingSet.load(data_dir, model_config)
    model = AVFlow(model_config, vocab_size()).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    last = out / "last.pt"
    rng = np.random.default_rng(train.seed)
    averaged = weight_average(model, train.ema_decay)
    resumed = resume(last, model, opt, train.seed, device, averaged)
    if resumed:
        rng = resumed[2]
    elif init is not None:
        start = load_model(init, device)[0]
        if start.config != model_config and model_config.same_network_but_speech(start.config):
            warm_start(model, start, init)
            set_speech_statistics(model, data)  # copy_ moves the CPU statistics to the model's device
        else:
            start_from(model, start, init)
    else:
        _fit_vae(model, data, train.vae_steps, rng, device)
        model.cpu()
        set_statistics(model, data)
        model.to(device)
    # The folder's name only: a checkpoint (and the reports made from it) must not carry this machine's paths.
    data_info = {"folder": data_dir.name, "samples": len(data.samples), "hours": round(data.hours, 3)}
    loss_log = LossLog(out / "loss.csv", LOSS_KEYS)

    def save(run_state: dict[str, object]) -> None:
        extra = {**run_state, "data": data_info, "train_config": config.model_dump(mode="json")}
        network = model
        if averaged is not None:  # saves follow a step, so the average holds one
            # the average is the network to use (export, eval, --init); training resumes from the weights
            network = cast(AVFlow, averaged.module)
            extra["train_state_dict"] = model.state_dict()
        save_checkpoint(last, network, extra)
        plot_losses(loss_log.path, out / "loss.png")

    run = Run(train, opt, loss_log, save, resumed, device)
    model.train()
    for p in model.head_vae.parameters():
        p.requires_grad_(False)  # the VAE is fitted in stage 1 and frozen, so its latent space is stable
    while not run.done:
        run.set_lr()
        batch = data.batch(train.batch_size, train.crop_frames, rng).to(device)
        parts = losses(model, batch)
        opt.zero_grad(set_to_none=True)
        parts["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        opt.step()
        if averaged is not None:
            averaged.update_parameters(model)
        if run.end_step({key: parts[key].item() for key in LOSS_KEYS}, progress):
            break
    return last


def warm_start(model: AVFlow, start: AVFlow, init: Path) -> None:
    """A new speech representation from a trained network: every tensor whose shape matches is taken
    from ``start`` (text encoder, durations, both towers, highways, motion, head-pose VAE); the speech
    tower's input, output and prior layers keep their fresh initialisation (the output starts at zero,
    as in a new network) and the speech statistics are the caller's to set from the data."""
    own = model.state_dict()
    theirs = start.state_dict()
    fresh = sorted(k for k in own if k.startswith(SPEECH_LAYERS) or theirs[k].shape != own[k].shape)
    model.load_state_dict({**theirs, **{k: own[k] for k in fresh}})
    log.info("warm start from %s (%s -> %s features); new: %s", init, start.config.speech,
             model.config.speech, ", ".join(fresh))  # fmt: skip


def _fit_vae(
    model: AVFlow, data: TrainingSet, steps: int, rng: np.random.Generator, device: torch.device
) -> None:
    """Stage 1: the head-pose VAE on 4 s windows of head motion."""
    vae = model.head_vae
    poses = np.concatenate([s.motion[:, FACE_DIM:] for s in data.samples])
    vae.scale.copy_(torch.from_numpy(np.maximum(poses.std(0), 1e-3)))
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    for _ in range(steps):
        batch = data.batch(32, 160, rng)
        pose = batch.motion[..., FACE_DIM:].to(device)
        loss = vae.loss(pose)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
