"""Speech features of the joint model: WORLD vocoder parameters at the model frame rate, and back to audio.

AV-Flow predicts spectrogram frames for a neural vocoder; we predict WORLD parameters instead, which
``pyworld`` turns into audio with no trained weights (docs/design.md, "The joint model"). One feature
frame covers 25 ms of 24 kHz audio (600 samples), the unit of Kokoro's duration predictor, so phoneme
durations are whole frames.

Columns of a feature frame (``FEATURE_DIM`` = 45):
``0`` log F0 (Hz, interpolated through unvoiced frames), ``1`` voicing (1 voiced, 0 not),
``2:42`` coded spectral envelope (``pyworld.code_spectral_envelope``, mel-cepstrum-like, 40 dims),
``42:45`` coded band aperiodicity (3 bands at 24 kHz).

Letters in shape comments: S samples, T feature frames, F = FEATURE_DIM.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 24_000
MODEL_FPS = 40.0  # feature frames per second
HOP = 600  # samples per feature frame
SPECTRAL_DIM = 40
APERIODIC_DIM = 3  # pyworld.get_num_aperiodicities(24000)
FEATURE_DIM = 2 + SPECTRAL_DIM + APERIODIC_DIM
LF0, VOICED = 0, 1
SPECTRAL = slice(2, 2 + SPECTRAL_DIM)
APERIODIC = slice(2 + SPECTRAL_DIM, FEATURE_DIM)
FFT_SIZE = 1024  # pyworld.get_cheaptrick_fft_size(24000)
_SYNTH_PERIOD_MS = 5.0  # synthesis frame period: features are interpolated onto this grid
_UPSAMPLE = round(1000.0 / MODEL_FPS / _SYNTH_PERIOD_MS)  # 5
_UNVOICED_LF0 = float(np.log(100.0))  # log F0 used when an utterance has no voiced frame

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class WorldOptions:
    """How WORLD analyses and resynthesises speech. The default is the model's feature layout; the
    others exist to measure the representation's ceiling (``bench/ceiling.py``) before any training,
    and a checkpoint trained on other options would need them at inference too."""

    f0_method: Literal["dio", "harvest"] = "dio"  # harvest: slower, fewer octave and voicing errors
    f0_floor: float = 60.0
    f0_ceil: float = 500.0
    spectral_dim: int = SPECTRAL_DIM
    fft_size: int = FFT_SIZE

    @property
    def feature_dim(self) -> int:
        """Columns of a feature frame: log F0, voicing, envelope, aperiodicity."""
        return 2 + self.spectral_dim + APERIODIC_DIM

    @property
    def spectral(self) -> slice:
        return slice(2, 2 + self.spectral_dim)

    @property
    def aperiodic(self) -> slice:
        return slice(2 + self.spectral_dim, self.feature_dim)


DEFAULT_OPTIONS = WorldOptions()


def _pyworld() -> Any:
    with warnings.catch_warnings():  # pyworld 0.3.x imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        import pyworld
    return pyworld


def frames_for(samples: int) -> int:
    """Feature frames that cover ``samples`` audio samples."""
    return max(1, -(-samples // HOP))


def _interpolate_unvoiced(log_f0: npt.NDArray[np.float64], voiced: npt.NDArray[np.bool_]) -> FloatArray:
    if not voiced.any():
        return np.full(log_f0.shape, _UNVOICED_LF0, np.float32)
    idx = np.arange(log_f0.size)
    return np.interp(idx, idx[voiced], log_f0[voiced]).astype(np.float32)


def analyze(audio: npt.NDArray[np.float32], options: WorldOptions = DEFAULT_OPTIONS) -> FloatArray:
    """24 kHz float audio (S,) -> WORLD features (T, F), frame ``j`` centred on sample ``600 j + 300``."""
    pw = _pyworld()
    o = options
    frames = frames_for(audio.size)
    wave = np.zeros(frames * HOP, np.float64)
    wave[: audio.size] = audio
    # F0 at a 5 ms period is more robust than at 25 ms; the envelope and aperiodicity are only
    # estimated at the feature frames' centres.
    track = pw.harvest if o.f0_method == "harvest" else pw.dio
    f0_fine, t_fine = track(
        wave, SAMPLE_RATE, f0_floor=o.f0_floor, f0_ceil=o.f0_ceil, frame_period=_SYNTH_PERIOD_MS
    )
    f0_fine = pw.stonemask(wave, f0_fine, t_fine, SAMPLE_RATE)
    times = (np.arange(frames) + 0.5) * HOP / SAMPLE_RATE  # (T,)
    nearest = np.clip(np.round(times / (_SYNTH_PERIOD_MS / 1000.0)).astype(int), 0, f0_fine.size - 1)
    f0 = np.ascontiguousarray(f0_fine[nearest])  # (T,)
    envelope = pw.cheaptrick(wave, f0, times, SAMPLE_RATE, fft_size=o.fft_size)  # (T, FFT/2+1)
    aperiodicity = pw.d4c(wave, f0, times, SAMPLE_RATE, fft_size=o.fft_size)  # (T, FFT/2+1)
    out = np.empty((frames, o.feature_dim), np.float32)
    voiced = f0 > 0
    out[:, LF0] = _interpolate_unvoiced(np.log(np.where(voiced, f0, 1.0)), voiced)
    out[:, VOICED] = voiced
    out[:, o.spectral] = pw.code_spectral_envelope(envelope, SAMPLE_RATE, o.spectral_dim)
    out[:, o.aperiodic] = pw.code_aperiodicity(aperiodicity, SAMPLE_RATE)
    return out


def _upsample(values: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """(T, K) at 40 fps -> (T * 5, K) on the 5 ms synthesis grid, linear between frame centres."""
    frames = values.shape[0]
    grid = np.arange(frames * _UPSAMPLE) / _UPSAMPLE - 0.5  # in feature frames, relative to centres
    left = np.clip(np.floor(grid).astype(int), 0, frames - 1)  # (T*5,)
    right = np.clip(left + 1, 0, frames - 1)
    w = np.clip(grid - np.floor(grid), 0.0, 1.0)[:, None]
    w[grid < 0] = 0.0  # before the first centre: hold the first frame
    v = np.asarray(values, np.float64)
    out: npt.NDArray[np.float64] = (1.0 - w) * v[left] + w * v[right]
    return out


def synthesize(features: npt.NDArray[np.floating], options: WorldOptions = DEFAULT_OPTIONS) -> FloatArray:
    """WORLD features (T, F) -> 24 kHz float audio (T * 600,) in [-1, 1].

    The envelope and aperiodicity are decoded once per feature frame and interpolated onto the 5 ms
    grid (decoding every 5 ms frame costs five times as much for the same sound).
    """
    pw = _pyworld()
    o = options
    feats = np.asarray(features, np.float32)
    if feats.ndim != 2 or feats.shape[1] != o.feature_dim:
        raise ValueError(f"speech features must have shape (T, {o.feature_dim}), got {feats.shape}")
    coarse = feats.astype(np.float64)
    envelope = _upsample(
        pw.decode_spectral_envelope(np.ascontiguousarray(coarse[:, o.spectral]), SAMPLE_RATE, o.fft_size)
    )
    aperiodicity = _upsample(
        pw.decode_aperiodicity(np.ascontiguousarray(coarse[:, o.aperiodic]), SAMPLE_RATE, o.fft_size)
    )
    aperiodicity = np.clip(aperiodicity, 1e-6, 1.0)
    prosody = _upsample(coarse[:, :2])
    voiced = prosody[:, VOICED] >= 0.5
    f0 = np.where(voiced, np.exp(np.clip(prosody[:, LF0], np.log(40.0), np.log(800.0))), 0.0)
    audio = pw.synthesize(np.ascontiguousarray(f0), envelope, aperiodicity, SAMPLE_RATE, _SYNTH_PERIOD_MS)
    samples = feats.shape[0] * HOP
    out = np.zeros(samples, np.float32)
    out[: min(samples, audio.size)] = audio[:samples]
    return np.clip(out, -1.0, 1.0)


def resynthesize(audio: npt.NDArray[np.float32], options: WorldOptions = DEFAULT_OPTIONS) -> FloatArray:
    """24 kHz speech (S,) through analysis and synthesis, cut to (S,): the representation's ceiling, what
    a perfect model of these features would sound like."""
    return synthesize(analyze(audio, options), options)[: audio.size]


def silence(frames: int) -> FloatArray:
    """Features of ``frames`` frames of silence (what the actor 'says' while listening)."""
    return analyze(np.zeros(frames * HOP, np.float32))
