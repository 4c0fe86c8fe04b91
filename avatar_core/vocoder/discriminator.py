"""Discriminators for adversarial fine-tuning of the vocoder, sized for a CPU (docs/design.md, "The joint
model"): HiFi-GAN's multi-period discriminator (periodic structure: the harmonics of voiced speech) and
UnivNet's multi-resolution spectrogram discriminator, as Vocos trains with, at a fraction of their width.

Losses are Vocos's: hinge losses for the discriminator and the generator, and the L1 distance between
the discriminators' feature maps on real and generated audio (feature matching).

Letters in shape comments: B batch, S samples, C channels, F bins, K frames, P period.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from avatar_core.vocoder.losses import RESOLUTIONS

Judgement = tuple[list[torch.Tensor], list[list[torch.Tensor]]]  # logits and feature maps per discriminator


def _judge(convs: nn.ModuleList, out: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run a 2-D convolution stack (leaky ReLU after each) and its output layer on x (B, 1, H, W):
    the flattened logits (B, L) and every layer's feature map."""
    maps = []
    for conv in convs:
        x = F.leaky_relu(conv(x), 0.1)
        maps.append(x)
    x = out(x)
    maps.append(x)
    return x.flatten(1), maps


class PeriodDiscriminator(nn.Module):
    """Audio folded by ``period`` into a 2-D grid, judged by 2-D convolutions along time."""

    def __init__(self, period: int, channels: tuple[int, ...] = (16, 32, 64, 64)) -> None:
        super().__init__()
        self.period = period
        convs, c_in = [], 1
        for c in channels:
            convs.append(weight_norm(nn.Conv2d(c_in, c, (5, 1), (3, 1), padding=(2, 0))))
            c_in = c
        convs.append(weight_norm(nn.Conv2d(c_in, c_in, (5, 1), 1, padding=(2, 0))))
        self.convs = nn.ModuleList(convs)
        self.out = weight_norm(nn.Conv2d(c_in, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:  # (B, S)
        b, s = audio.shape
        pad = (-s) % self.period
        x = F.pad(audio, (0, pad), mode="reflect").view(b, 1, (s + pad) // self.period, self.period)
        return _judge(self.convs, self.out, x)  # maps (B, C, S / P / 3^i, P)


class ResolutionDiscriminator(nn.Module):
    """The magnitude spectrogram at one STFT resolution, judged by 2-D convolutions."""

    window: torch.Tensor

    def __init__(self, n_fft: int, hop: int, channels: int = 32) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        c = channels
        self.convs = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(1, c, (3, 9), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 3), padding=(1, 1))),
            ]
        )
        self.out = weight_norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:  # (B, S)
        spec = torch.stft(audio, self.n_fft, self.hop, window=self.window, return_complex=True).abs()
        return _judge(self.convs, self.out, spec.transpose(1, 2)[:, None])  # from (B, 1, K, F)


class Discriminators(nn.Module):
    """Every period and resolution discriminator; ``forward`` judges one batch of audio with all."""

    def __init__(
        self,
        periods: tuple[int, ...] = (2, 3, 5, 7, 11),
        resolutions: tuple[tuple[int, int], ...] = RESOLUTIONS,  # (n_fft, hop): the STFT losses' own
    ) -> None:
        super().__init__()
        self.judges = nn.ModuleList(
            [*(PeriodDiscriminator(p) for p in periods), *(ResolutionDiscriminator(*r) for r in resolutions)]
        )

    def forward(self, audio: torch.Tensor) -> Judgement:  # (B, S) -> logits and maps per judge
        logits, maps = [], []
        for judge in self.judges:
            logit, fmaps = judge(audio)
            logits.append(logit)
            maps.append(fmaps)
        return logits, maps


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of the discriminators, averaged over them."""
    terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake, strict=True)]
    return torch.stack(terms).mean()


def generator_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of the generator against every discriminator, averaged."""
    return torch.stack([F.relu(1 - f).mean() for f in fake]).mean()


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Mean L1 between the feature maps of real (no gradient) and generated audio, over every layer."""
    terms = [
        F.l1_loss(f, r.detach())
        for maps_r, maps_f in zip(real, fake, strict=True)
        for r, f in zip(maps_r, maps_f, strict=True)
    ]
    return torch.stack(terms).mean()
