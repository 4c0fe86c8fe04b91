"""The vocoder's training loop: resumable, on the teacher dataset's stored speech and its features.

Only speaking samples are used (a listening sample's audio is the partner's voice, its features the
actor's silence). The dataset may still be growing: new samples are picked up every ``reload_every``
steps. ``out/last.pt`` holds the network, the optimiser and the step; a run started again continues.

Letters in shape comments: B batch, T feature frames (40 fps), F = FEATURE_DIM, S samples (T * 600).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from avatar_core.data.samples import DatasetError, load_sample, sample_paths
from avatar_core.model.train import pick_device
from avatar_core.speech.features import HOP
from avatar_core.vocoder.config import VocoderConfig, VocoderFitConfig
from avatar_core.vocoder.losses import vocoder_losses
from avatar_core.vocoder.model import Vocoder

log = logging.getLogger(__name__)
CHECKPOINT_VERSION = 1
LOSS_KEYS = ("total", "stft", "mel")


@dataclass
class Clips:
    """Speaking samples' features and audio, loaded once each."""

    folder: Path
    names: set[str] = field(default_factory=set)
    features: list[npt.NDArray[np.float32]] = field(default_factory=list)  # (T, F) each
    audio: list[npt.NDArray[np.int16]] = field(default_factory=list)  # (T * 600,) each

    def reload(self) -> int:
        """Load samples added since the last call; returns how many are new."""
        added = 0
        for path in sample_paths(self.folder):
            if path.stem in self.names:
                continue
            self.names.add(path.stem)
            try:
                sample = load_sample(path)
            except DatasetError as exc:
                log.warning("skipping %s", exc)
                continue
            if sample.role != "speak" or sample.audio is None:
                continue
            self.features.append(sample.speech)
            self.audio.append(sample.audio)
            added += 1
        if not self.features:
            raise DatasetError(
                f"{self.folder}: no speaking sample with stored audio; make one with `dyad train data`"
            )
        return added

    @property
    def hours(self) -> float:
        return sum(a.size for a in self.audio) / HOP / 40.0 / 3600.0

    def statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-column mean and std of all features: (F,) each."""
        stacked = np.concatenate(self.features)  # (sum T, F)
        return torch.from_numpy(stacked.mean(0)), torch.from_numpy(stacked.std(0))

    def batch(self, size: int, crop: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows: features (B, crop, F) and audio (B, crop * 600) in [-1, 1]."""
        lengths = np.array([f.shape[0] for f in self.features])
        weights = np.maximum(lengths - crop + 1, 1).astype(np.float64)
        picks = rng.choice(len(self.features), size=size, p=weights / weights.sum())
        feats, waves = [], []
        for i in picks:
            f, a = self.features[i], self.audio[i]
            start = int(rng.integers(0, max(1, f.shape[0] - crop + 1)))
            window = f[start : start + crop]
            wave = a[start * HOP : (start + crop) * HOP].astype(np.float32) / 32768.0
            if window.shape[0] < crop:  # a clip shorter than the crop: pad with its last frame, silence
                window = np.concatenate([window, np.repeat(window[-1:], crop - window.shape[0], 0)])
                wave = np.pad(wave, (0, crop * HOP - wave.size))
            feats.append(window)
            waves.append(wave)
        return torch.from_numpy(np.stack(feats)), torch.from_numpy(np.stack(waves))


def save_checkpoint(path: Path, model: Vocoder, extra: dict[str, object]) -> None:
    """Write ``path`` atomically: the network, its config and whatever ``extra`` holds."""
    state = {
        "version": CHECKPOINT_VERSION,
        "kind": "vocoder",
        "vocoder_config": model.config.model_dump(mode="json"),
        "state_dict": model.state_dict(),
        **extra,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_vocoder(path: Path, device: torch.device | None = None) -> tuple[Vocoder, dict[str, object]]:
    """Rebuild the network stored in a checkpoint; returns it (eval mode) and the whole checkpoint dict."""
    try:
        state = torch.load(path, map_location=device or "cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read the vocoder checkpoint ({exc})") from exc
    if not isinstance(state, dict) or state.get("kind") != "vocoder":
        raise ValueError(f"{path}: not a dyad vocoder checkpoint; train one with `dyad vocoder fit`")
    model = Vocoder(VocoderConfig.model_validate(state["vocoder_config"]))
    model.load_state_dict(state["state_dict"])
    model.eval()
    return model, state


def export_checkpoint(src: Path, dst: Path) -> None:
    """A small inference-only copy of a run's checkpoint (no optimiser state), to commit or ship."""
    model, state = load_vocoder(src)
    keep = {k: v for k, v in state.items() if k in ("step", "data", "train_config", "wall_s", "hardware")}
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(dst, model, keep)


def _lr(step: int, config: VocoderFitConfig) -> float:
    train = config.train
    if step < train.warmup_steps:
        return train.lr * (step + 1) / train.warmup_steps
    progress = (step - train.warmup_steps) / max(1, train.steps - train.warmup_steps)
    return train.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def fit(
    data_dir: Path,
    out: Path,
    config: VocoderFitConfig,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> Path:
    """Train (or continue training) into ``out``; returns the path of ``last.pt``."""
    out.mkdir(parents=True, exist_ok=True)
    train = config.train
    device = pick_device(train.device)
    if device.type == "cpu" and train.threads:
        torch.set_num_threads(train.threads)
    torch.manual_seed(train.seed)
    clips = Clips(data_dir)
    clips.reload()
    model = Vocoder(config.vocoder_config()).to(device)
    opt = torch.optim.AdamW(
        model.parameters(), lr=train.lr, betas=(0.8, 0.9), weight_decay=train.weight_decay
    )
    last = out / "last.pt"
    step, wall = 0, 0.0
    rng = np.random.default_rng(train.seed)
    if last.exists():
        state = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        step, wall = int(state["step"]), float(state.get("wall_s", 0.0))
        rng = np.random.default_rng([train.seed, step])
        log.info("resuming %s at step %d", last, step)
    else:
        mean, std = clips.statistics()
        model.set_statistics(mean.to(device), std.to(device))
    hardware = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU x{torch.get_num_threads()}"
    csv_path = out / "loss.csv"
    if not csv_path.exists():
        csv_path.write_text("step," + ",".join(LOSS_KEYS) + ",lr,samples,wall_s\n")
    started = time.monotonic()
    running = dict.fromkeys(LOSS_KEYS, 0.0)
    count = 0

    def checkpoint() -> None:
        save_checkpoint(
            last,
            model,
            {
                "optimizer": opt.state_dict(),
                "step": step,
                "wall_s": wall + time.monotonic() - started,
                # the folder's name only: a checkpoint must not carry this machine's paths
                "data": {"folder": data_dir.name, "clips": len(clips.audio), "hours": round(clips.hours, 3)},
                "train_config": config.model_dump(mode="json"),
                "hardware": hardware,
            },
        )

    model.train()
    while step < train.steps:
        if step and step % train.reload_every == 0:
            log.info("%d new clips", clips.reload())
        for group in opt.param_groups:
            group["lr"] = _lr(step, config)
        feats, target = clips.batch(train.batch_size, train.crop_frames, rng)
        pred = model(feats.to(device))  # (B, S)
        parts = vocoder_losses(pred, target.to(device))
        total: torch.Tensor = train.stft_weight * parts["stft"] + train.mel_weight * parts["mel"]
        opt.zero_grad(set_to_none=True)
        total.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward untyped
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        opt.step()
        step += 1
        values = {"total": total.item(), "stft": parts["stft"].item(), "mel": parts["mel"].item()}
        for key in LOSS_KEYS:
            running[key] += values[key]
        count += 1
        if step % train.log_every == 0 or step == train.steps:
            means = {k: v / count for k, v in running.items()}
            with open(csv_path, "a") as f:
                row = ",".join(f"{means[k]:.5f}" for k in LOSS_KEYS)
                elapsed = wall + time.monotonic() - started
                f.write(f"{step},{row},{_lr(step, config):.6f},{len(clips.audio)},{elapsed:.1f}\n")
            if progress:
                progress(step, train.steps, means)
            running = dict.fromkeys(LOSS_KEYS, 0.0)
            count = 0
        out_of_time = train.time_limit_min and (time.monotonic() - started) / 60 >= train.time_limit_min
        if step % train.checkpoint_every == 0 or step == train.steps or out_of_time:
            checkpoint()
        if out_of_time:
            log.info("time limit reached at step %d", step)
            break
    return last
