"""The vocoder's training loop: resumable, on the teacher dataset's stored speech and its features.

Only speaking samples are used (a listening sample's audio is the partner's voice, its features the
actor's silence). A run may read more than one folder (``fit(mix=...)``): the joint model's predicted
features (``dyad vocoder gta``) beside the teacher's own, so that fine-tuning on the first does not unlearn
the second (docs/design.md, "The joint model"). The dataset may still be growing: new samples are picked
up every ``reload_every`` steps. ``out/last.pt`` holds the network, the optimiser and the step; a run
started again continues.

Letters in shape comments: B batch, T feature frames (40 fps), F the network's input columns, S samples
(T * 600).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from avatar_core.data.samples import DatasetError, load_sample, sample_paths
from avatar_core.speech.features import HOP
from avatar_core.training import (
    EXPORT_KEYS,
    LossLog,
    Run,
    read_checkpoint,
    resume,
    setup,
    start_from,
    write_checkpoint,
)
from avatar_core.vocoder.config import VocoderConfig, VocoderFitConfig, VocoderTrainConfig
from avatar_core.vocoder.discriminator import (
    Discriminators,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
)
from avatar_core.vocoder.losses import RESOLUTIONS, vocoder_losses
from avatar_core.vocoder.model import Vocoder

log = logging.getLogger(__name__)
CHECKPOINT_VERSION = 1
LOSS_KEYS = ("total", "stft", "mel")
ADVERSARIAL_KEYS = ("adversarial", "feature_matching", "discriminator")


@dataclass
class Clips:
    """Speaking samples' features and audio of ``folder`` and the ``also`` folders, loaded once each;
    batches draw from all of them alike (each clip weighted by its length). The features are each
    sample's speech in ``layout`` (``Sample.speech_in``: the stored ones, or the log-mel frames of its
    audio for a mel vocoder); a GTA sample's are the joint model's prediction, kept only in that layout."""

    folder: Path
    also: tuple[Path, ...] = ()
    layout: str = "world"  # the features' layout (a name, ``avatar_core.speech.layout``)
    names: set[tuple[int, str]] = field(default_factory=set)  # (folder index, file stem)
    features: list[npt.NDArray[np.float32]] = field(default_factory=list)  # (T, F) each
    audio: list[npt.NDArray[np.int16]] = field(default_factory=list)  # (T * 600,) each

    def reload(self) -> int:
        """Load samples added since the last call; returns how many are new."""
        added = 0
        for index, folder in enumerate((self.folder, *self.also)):
            added += self._load(index, folder)
        if not self.features:
            raise DatasetError(
                f"{self.folder}: no speaking sample with stored audio; make one with `dyad train data`"
            )
        return added

    def _load(self, index: int, folder: Path) -> int:
        added = 0
        for path in sample_paths(folder):
            if (index, path.stem) in self.names:
                continue
            self.names.add((index, path.stem))
            try:
                sample = load_sample(path)
            except DatasetError as exc:
                log.warning("skipping %s", exc)
                continue
            if sample.role != "speak" or sample.audio is None:
                continue
            if sample.source.startswith("gta:") and sample.speech_layout != self.layout:
                log.warning("skipping %s: a prediction in %s for a vocoder reading %s",
                            path, sample.speech_layout, self.layout)  # fmt: skip
                continue
            self.features.append(sample.speech_in(self.layout))
            self.audio.append(sample.audio)
            added += 1
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
    write_checkpoint(path, state)


def load_vocoder(path: Path, device: torch.device | None = None) -> tuple[Vocoder, dict[str, object]]:
    """Rebuild the network stored in a checkpoint; returns it (eval mode) and the whole checkpoint dict."""
    state = read_checkpoint(path, device, "vocoder checkpoint")
    if not isinstance(state, dict) or state.get("kind") != "vocoder":
        raise ValueError(f"{path}: not a dyad vocoder checkpoint; train one with `dyad vocoder fit`")
    model = Vocoder(VocoderConfig.model_validate(state["vocoder_config"]))
    model.load_state_dict(state["state_dict"])
    model.eval()
    return model, state


def export_checkpoint(src: Path, dst: Path) -> None:
    """A small inference-only copy of a run's checkpoint (no optimiser state), to commit or ship."""
    model, state = load_vocoder(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(dst, model, {k: v for k, v in state.items() if k in EXPORT_KEYS})


def fit(
    data_dir: Path,
    out: Path,
    config: VocoderFitConfig,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    init: Path | None = None,
    mix: tuple[Path, ...] = (),
) -> Path:
    """Train (or continue training) into ``out``; returns the path of ``last.pt``.

    ``init``: a new run starts from that vocoder checkpoint's weights and feature statistics
    (fine-tuning, e.g. on ``dyad vocoder gta`` data) instead of from scratch; a resumed run ignores it.
    ``mix``: more dataset folders whose speaking samples join ``data_dir``'s (e.g. the teacher's own
    features beside the gta folder made from them).
    """
    out.mkdir(parents=True, exist_ok=True)
    train = config.train
    device = setup(train)
    vocoder_config = config.vocoder_config()
    clips = Clips(data_dir, tuple(mix), vocoder_config.name(vocoder_config.inputs))
    clips.reload()
    model = Vocoder(vocoder_config).to(device)
    opt = torch.optim.AdamW(
        model.parameters(), lr=train.lr, betas=(0.8, 0.9), weight_decay=train.weight_decay
    )
    last = out / "last.pt"
    rng = np.random.default_rng(train.seed)
    resumed = resume(last, model, opt, train.seed, device)
    if resumed:
        rng = resumed[2]
    elif init is not None:
        start_from(model, load_vocoder(init, device)[0], init)
    else:
        mean, std = clips.statistics()
        model.set_statistics(mean.to(device), std.to(device))

    adversary = Adversary.build(train, device)
    if adversary is not None and resumed:
        adversary.load(read_checkpoint(last, device, "vocoder checkpoint"))

    def save(run_state: dict[str, object]) -> None:
        # the folder's name only: a checkpoint must not carry this machine's paths
        data = {
            "folder": data_dir.name,
            "mixed_with": [folder.name for folder in mix],
            "clips": len(clips.audio),
            "hours": round(clips.hours, 3),
        }
        if adversary is not None:
            run_state = {**run_state, **adversary.state()}
        save_checkpoint(
            last, model, {**run_state, "data": data, "train_config": config.model_dump(mode="json")}
        )

    keys = LOSS_KEYS + ADVERSARIAL_KEYS if adversary is not None else LOSS_KEYS
    run = Run(train, opt, LossLog(out / "loss.csv", keys, extra=("samples",)), save, resumed, device)
    model.train()
    while not run.done:
        if run.step and run.step % train.reload_every == 0:
            log.info("%d new clips", clips.reload())
        run.set_lr()
        feats, target = clips.batch(train.batch_size, train.crop_frames, rng)
        target = target.to(device)  # (B, S)
        pred = model(feats.to(device))  # (B, S)
        parts = vocoder_losses(pred, target)
        total: torch.Tensor = train.stft_weight * parts["stft"] + train.mel_weight * parts["mel"]
        values: dict[str, float] = {}
        if adversary is not None:
            values["discriminator"] = adversary.step(pred.detach(), target, opt.param_groups[0]["lr"])
            fooled, matching = adversary.generator_losses(pred, target)
            total = total + train.adversarial_weight * fooled + train.feature_matching_weight * matching
            values.update(adversarial=fooled.item(), feature_matching=matching.item())
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        opt.step()
        values.update(total=total.item(), stft=parts["stft"].item(), mel=parts["mel"].item())
        if run.end_step(values, progress, (len(clips.audio),)):
            break
    return last


@dataclass
class Adversary:
    """The discriminators of an adversarial run and their optimiser (``adversarial_weight`` or
    ``feature_matching_weight`` > 0); saved in ``last.pt`` beside the network, left out of exports."""

    judges: Discriminators
    opt: torch.optim.Optimizer
    grad_clip: float

    @classmethod
    def build(cls, train: VocoderTrainConfig, device: torch.device) -> Adversary | None:
        """None when the run has no adversarial loss."""
        if not (train.adversarial_weight > 0 or train.feature_matching_weight > 0):
            return None
        resolutions = RESOLUTIONS if train.spectrogram_discriminator else ()
        judges = Discriminators(resolutions=resolutions).to(device)
        opt = torch.optim.AdamW(
            judges.parameters(), lr=train.lr, betas=(0.8, 0.9), weight_decay=train.weight_decay
        )
        return cls(judges, opt, train.grad_clip)

    def state(self) -> dict[str, object]:
        """The checkpoint entries that resume them."""
        return {"discriminators": self.judges.state_dict(), "discriminators_optimizer": self.opt.state_dict()}

    def load(self, checkpoint: object) -> None:
        """Continue from a checkpoint's entries (a run fine-tuned without them starts them fresh)."""
        if isinstance(checkpoint, dict) and "discriminators" in checkpoint:
            self.judges.load_state_dict(checkpoint["discriminators"])
            self.opt.load_state_dict(checkpoint["discriminators_optimizer"])

    def step(self, fake: torch.Tensor, real: torch.Tensor, lr: float) -> float:
        """One optimiser step of the discriminators on generated and real audio (B, S) each; their loss."""
        for group in self.opt.param_groups:
            group["lr"] = lr
        loss = discriminator_loss(self.judges(real)[0], self.judges(fake)[0])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.judges.parameters(), self.grad_clip)
        self.opt.step()
        return loss.item()

    def generator_losses(self, fake: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The generator's hinge loss and feature-matching L1 on (B, S) audio each."""
        with torch.no_grad():
            real_maps = self.judges(real)[1]
        fake_logits, fake_maps = self.judges(fake)
        return generator_loss(fake_logits), feature_matching_loss(real_maps, fake_maps)
