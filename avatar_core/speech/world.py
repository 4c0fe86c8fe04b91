"""WORLD vocoder utilities (pyworld): analysis/resynthesis, used for pitch shifting a TTS voice."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def shift_pitch(
    audio: npt.NDArray[np.float32], sample_rate: int, semitones: float
) -> npt.NDArray[np.float32]:
    """The same speech with F0 scaled by ``2 ** (semitones / 12)``; duration and spectrum unchanged."""
    if semitones == 0 or audio.size < sample_rate // 20:
        return audio
    import pyworld

    wave = audio.astype(np.float64)
    f0, times = pyworld.dio(wave, sample_rate, frame_period=5.0)
    f0 = pyworld.stonemask(wave, f0, times, sample_rate)
    envelope = pyworld.cheaptrick(wave, f0, times, sample_rate)
    aperiodicity = pyworld.d4c(wave, f0, times, sample_rate)
    out: npt.NDArray[np.float64] = pyworld.synthesize(
        f0 * 2.0 ** (semitones / 12.0), envelope, aperiodicity, sample_rate, 5.0
    )
    return np.clip(out[: audio.size], -1.0, 1.0).astype(np.float32)
