"""The neural vocoder: WORLD (or log-mel) features at 40 fps -> 24 kHz audio, Vocos-style.

A 1-D convolution embeds the normalised features, a transposed convolution upsamples them to the STFT
frame rate (``hop`` samples, 80 fps at the default hop 300), a stack of ConvNeXt blocks mixes time, and a
linear head predicts each STFT bin's log magnitude and phase; ``torch.istft`` turns them into audio.
Why hop 300 / n_fft 1200: the overlap (4x) and time step (12.5 ms) of Vocos's proven 24 kHz setup
(hop 256, 10.7 ms), 20 Hz bins that resolve the harmonics of the highest voice (F0 ~ 300 Hz, 15 bins
apart), and half the backbone cost of hop 150 for the single CPU core the budget allows.

Letters in shape comments: B batch, T feature frames (40 fps), F = ``config.input_dim`` (45 WORLD
parameters, or log-mel bands times sub-frames), D channels,
K STFT frames (T * upsample + 1), N = n_fft // 2 + 1 bins, S samples (T * 600).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avatar_core.speech.features import HOP
from avatar_core.vocoder.config import VocoderConfig


class ConvNeXtBlock(nn.Module):
    """Depthwise conv, LayerNorm, pointwise MLP, layer scale, residual (ConvNeXt as in Vocos)."""

    def __init__(self, dim: int, intermediate: int, kernel: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, intermediate)
        self.pw2 = nn.Linear(intermediate, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D, K) -> (B, D, K)
        y = self.dwconv(x).transpose(1, 2)  # (B, K, D)
        y = self.pw2(F.gelu(self.pw1(self.norm(y))))
        scaled: torch.Tensor = self.gamma * y  # (B, K, D)
        return x + scaled.transpose(1, 2)


class Vocoder(nn.Module):
    """Features (B, T, F) -> audio (B, T * 600); ``mean``/``std`` normalise the features (set from data)."""

    mean: torch.Tensor  # (F,)
    std: torch.Tensor  # (F,)
    window: torch.Tensor  # (n_fft,)

    def __init__(self, config: VocoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.register_buffer("mean", torch.zeros(c.input_dim))
        self.register_buffer("std", torch.ones(c.input_dim))
        self.embed = nn.Conv1d(c.input_dim, c.dim, c.kernel, padding=c.kernel // 2)
        up = c.upsample
        # stride = up, kernel 2*up, padding up//2: output T * up frames, each fed by the two nearest inputs
        self.up = (
            nn.ConvTranspose1d(c.dim, c.dim, 2 * up, stride=up, padding=up // 2) if up > 1 else nn.Identity()
        )
        self.norm = nn.LayerNorm(c.dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(c.dim, c.intermediate, c.kernel, 1.0 / c.blocks) for _ in range(c.blocks)
        )
        self.final_norm = nn.LayerNorm(c.dim, eps=1e-6)
        self.bins = c.n_fft // 2 + 1
        self.head = nn.Linear(c.dim, 2 * self.bins)
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)

    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Feature normalisation from the training data: (F,) each."""
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-3))

    def spectrum(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> complex STFT (B, N, K) with K = T * upsample + 1 frames (istft, center=True)."""
        x = ((features - self.mean) / self.std).transpose(1, 2)  # (B, F, T)
        x = self.up(self.embed(x))  # (B, D, T * up)
        x = F.pad(x, (0, 1), mode="replicate")  # (B, D, K): istft's centred frames are one more
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)  # (B, D, K)
        h = self.head(self.final_norm(x.transpose(1, 2))).transpose(1, 2)  # (B, 2N, K)
        log_mag, phase = h.split(self.bins, dim=1)  # (B, N, K) each
        mag = torch.exp(log_mag).clamp(max=1e2)  # Vocos: the exponential keeps the magnitude positive
        return torch.polar(mag, phase)  # mag * (cos + i sin)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (B, S)
        frames = features.shape[1]
        return torch.istft(
            self.spectrum(features),
            self.config.n_fft,
            self.config.hop,
            window=self.window,
            center=True,
            length=frames * HOP,
        )
