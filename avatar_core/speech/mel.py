"""Log-mel spectrogram frames at the model frame rate: the alternative to WORLD features.

Most TTS models predict a log-mel spectrogram for a neural vocoder; dyad's joint model predicts WORLD
parameters (``features.py``), whose ceiling stays 0.02-0.06 WER above Kokoro's own speech for the high
voices (docs/design.md, "The joint model"). This module is the mel side of that comparison: a
:class:`MelOptions` says how many bands and how many mel frames one 25 ms feature frame stacks
(``subframes``: 1 = one mel frame per feature frame, 2 = two at hop 300), and :func:`log_mel` turns
24 kHz audio into (T, bands * subframes) frames aligned with the WORLD frames (frame ``j`` covers samples
``600 j`` to ``600 (j + 1)``; its sub-frames are centred at equal steps inside it).

Letters in shape comments: S samples, T feature frames (40 fps), M mel bands, N STFT bins, K mel frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import torch

from avatar_core.speech.features import HOP, SAMPLE_RATE, frames_for

FloatArray = npt.NDArray[np.float32]
LOG_FLOOR = 1e-5  # magnitude floor before the log (Vocos, HiFi-GAN)


def band_edges(bands: int) -> npt.NDArray[np.float64]:
    """Edges (M + 2,) in Hz of ``bands`` triangular HTK mel filters from 0 Hz to Nyquist at 24 kHz: band
    ``i`` rises from edge ``i`` to its centre, edge ``i + 1``, and falls to edge ``i + 2``."""
    top = 2595.0 * math.log10(1.0 + SAMPLE_RATE / 2 / 700.0)
    return 700.0 * (10.0 ** (np.linspace(0.0, top, bands + 2) / 2595.0) - 1.0)


def shift_bands(frames: npt.NDArray[np.floating], bands: int, semitones: float) -> FloatArray:
    """Log-mel frames (K, M * j) with ``j`` stacked mel frames of ``bands`` each -> the same frames with
    every frequency scaled by 2 ** (semitones / 12) (harmonics and formants together, as resampling the
    audio would; the band values are interpolated between band centres, the edge bands held)."""
    x = np.asarray(frames, np.float32)
    centres = band_edges(bands)[1:-1]  # (M,)
    source = centres / 2.0 ** (semitones / 12.0)  # band i takes the level the speech had there
    flat = x.reshape(-1, bands)  # (K * j, M)
    out = np.empty_like(flat)
    for k, row in enumerate(flat):
        out[k] = np.interp(source, centres, row)  # beyond the ends: the edge bands' levels
    return out.reshape(x.shape)


@lru_cache(maxsize=16)
def mel_filters(n_fft: int, bands: int, device: torch.device | None = None) -> torch.Tensor:
    """Triangular HTK mel filterbank (M, N) from 0 Hz to Nyquist at 24 kHz; built once per size and
    device (every training step and every analysed clip asks again), so callers must not modify it."""

    # a normal tensor even when first asked for under inference mode: training's losses reuse it
    with torch.inference_mode(False):
        edges = torch.from_numpy(band_edges(bands)).float().to(device)  # (M + 2,) Hz
        freqs = torch.linspace(0.0, SAMPLE_RATE / 2, n_fft // 2 + 1, device=device)  # (N,)
        lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
        rise = (freqs - lower) / (centre - lower)
        fall = (upper - freqs) / (upper - centre)
        return torch.clamp(torch.minimum(rise, fall), min=0.0)  # (M, N)


@dataclass(frozen=True)
class MelOptions:
    """A log-mel layout: ``bands`` per mel frame, ``subframes`` mel frames per 25 ms feature frame,
    each from an ``n_fft``-sample Hann window."""

    bands: int = 100
    subframes: int = 2
    n_fft: int = 1200

    def __post_init__(self) -> None:
        if self.bands < 8:
            raise ValueError(f"mel_bands {self.bands}: use at least 8 (80 or 100 as TTS models do)")
        if self.subframes < 1 or HOP % self.subframes:
            raise ValueError(f"mel_subframes {self.subframes} must divide the feature hop {HOP} (1, 2, 4)")
        if self.n_fft < self.hop:
            raise ValueError(f"mel_n_fft {self.n_fft} must be at least the mel hop {self.hop}")

    @property
    def hop(self) -> int:
        """Samples between mel frames."""
        return HOP // self.subframes

    @property
    def feature_dim(self) -> int:
        """Columns of a feature frame: the sub-frames' bands side by side."""
        return self.bands * self.subframes


def log_mel(audio: npt.NDArray[np.floating], options: MelOptions) -> FloatArray:
    """24 kHz audio (S,) -> log-mel features (T, M * subframes), T = ``frames_for(S)``.

    Mel frame ``k`` is centred on sample ``hop * k + hop / 2``, so the sub-frames of feature frame
    ``j`` sit at equal steps inside its 600 samples, as WORLD's frame ``j`` is centred in them.
    """
    o = options
    frames = frames_for(int(np.asarray(audio).size))
    wave = np.zeros(frames * HOP, np.float32)
    a = np.asarray(audio, np.float32)
    wave[: a.size] = a
    shift = o.hop // 2  # centre mel frame k on hop * k + hop / 2: start the centred STFT there
    padded = np.pad(wave, (o.n_fft // 2 - shift, o.n_fft // 2 + shift), mode="constant")
    with torch.inference_mode():
        spec = torch.stft(
            torch.from_numpy(padded),
            o.n_fft,
            o.hop,
            window=torch.hann_window(o.n_fft),
            center=False,
            return_complex=True,
        ).abs()  # (N, K')
        spec = spec[:, : frames * o.subframes]  # (N, K), K = T * subframes
        mel = (mel_filters(o.n_fft, o.bands) @ spec).clamp_min(LOG_FLOOR).log()  # (M, K)
    stacked = mel.T.reshape(frames, o.subframes * o.bands)  # (T, subframes * M), sub-frame-major
    out: FloatArray = stacked.numpy().astype(np.float32)
    return out
