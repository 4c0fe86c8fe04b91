"""F0 and energy contours of speech at a motion frame rate, for the teacher's prosody cues."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from avatar_core.teacher.speaking import Prosody

SOUND_DB = -40.0  # quieter than this below the loudest 10 ms is silence (sound_end_s)


def energy_10ms(audio: npt.NDArray[np.float32], sample_rate: int) -> npt.NDArray[np.float64]:
    """RMS energy of each whole 10 ms of ``audio`` (S,) -> (S // (sample_rate / 100),)."""
    hop = sample_rate // 100
    n = audio.size // hop
    frames = audio[: n * hop].astype(np.float64).reshape(n, hop)
    return np.sqrt((frames**2).mean(axis=1)) if n else np.zeros(0)


def sound_end_s(audio: npt.NDArray[np.float32], sample_rate: int) -> float | None:
    """The end of the last 10 ms of ``audio`` (S,) within ``SOUND_DB`` of its loudest, in seconds (None:
    all silent)."""
    energy = energy_10ms(audio, sample_rate)
    loud = np.flatnonzero(energy > energy.max(initial=0.0) * 10 ** (SOUND_DB / 20))
    return (int(loud[-1]) + 1) / 100 if loud.size else None


def prosody_from_audio(audio: npt.NDArray[np.float32], sample_rate: int, fps: float) -> Prosody:
    """F0 (pyworld DIO + StoneMask, Hz, 0 = unvoiced) and RMS energy, one value per frame at ``fps``.

    Frame ``k`` describes the audio around ``k / fps`` seconds.
    """
    import pyworld

    frames = max(1, int(np.ceil(audio.size / sample_rate * fps)))
    if audio.size < sample_rate // 20:  # too short to estimate pitch
        return Prosody(fps, np.zeros(frames, np.float32), np.zeros(frames, np.float32))
    wave = audio.astype(np.float64)
    period_ms = 1000.0 / fps
    f0, times = pyworld.dio(wave, sample_rate, f0_floor=60.0, f0_ceil=500.0, frame_period=period_ms)
    f0 = pyworld.stonemask(wave, f0, times, sample_rate)
    f0 = np.pad(f0, (0, max(0, frames - f0.size)))[:frames]
    hop = sample_rate / fps
    centers = (np.arange(frames) * hop).astype(int)  # (T,)
    half = int(hop)
    padded = np.pad(audio, half)
    energy = np.array(
        [np.sqrt(np.mean(padded[c : c + 2 * half] ** 2)) for c in centers], dtype=np.float32
    )  # (T,) RMS over a window of two hops centred on the frame
    return Prosody(fps, f0.astype(np.float32), energy)
