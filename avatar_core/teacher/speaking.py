"""Speaking motion from a phoneme timeline and prosody: the training target and the cascade-mode face.

Mouth: each phoneme's viseme targets are blended by dominance functions (Cohen & Massaro), so shapes
anticipate and carry over instead of stepping; /p b m/ then seal the lips for exactly their interval.
Prosody: the jaw follows loudness; pitch accents (stressed vowels whose F0 rises above the speaker's
median) get a nod and, when strong, a brow raise; head pitch drifts slightly with F0.

Letters in shape comments: T frames, D = MOTION_DIM, P phones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avatar_core.config import BehaviourConfig
from avatar_core.motion import INDEX, MOTION_DIM, MOUTH_FIELDS, FloatArray, clip
from avatar_core.teacher.idle import IdleLayer, compose
from avatar_core.teacher.visemes import BILABIALS, LENGTH, PHRASE_ENDS, STRESS, VISEMES, viseme_class

_BILABIAL_OPEN_MAX = 0.85  # lips_pressed outside /p b m/ stays below a seal
_REST_DOMINANCE = 0.05
_VOWELS = frozenset({"open", "mid", "schwa", "spread", "rounded", "round_open"})


@dataclass(frozen=True)
class Phone:
    """One phoneme symbol with its time span in seconds."""

    symbol: str
    start: float
    end: float


@dataclass(frozen=True)
class Prosody:
    """F0 (Hz, 0 = unvoiced) and RMS energy sampled at ``fps``."""

    fps: float
    f0_hz: npt.NDArray[np.float32]  # (N,)
    energy: npt.NDArray[np.float32]  # (N,)

    def at(self, times: npt.NDArray[np.float64]) -> tuple[FloatArray, FloatArray]:
        """F0 and energy at the given times (nearest sample), shapes (T,), (T,)."""
        idx = np.clip(np.round(times * self.fps).astype(int), 0, max(0, len(self.f0_hz) - 1))
        if len(self.f0_hz) == 0:
            zeros = np.zeros(len(times), np.float32)
            return zeros, zeros
        return self.f0_hz[idx], self.energy[idx]


@dataclass(frozen=True)
class _Segment:
    symbol: str
    start: float
    end: float
    stress: float  # 0, 0.5 secondary, 1 primary (from a preceding stress mark)


def _segments(phones: Sequence[Phone]) -> list[_Segment]:
    """Fold timing-only symbols into their neighbours: a length mark extends the previous phone, a
    stress mark passes its stress to the next vowel-bearing phone and its time to the previous one."""
    out: list[_Segment] = []
    pending_stress = 0.0
    pending_start: float | None = None  # a stress mark's time goes to the phone after it
    for phone in phones:
        if phone.symbol in STRESS:
            pending_stress = max(pending_stress, STRESS[phone.symbol])
            pending_start = phone.start if pending_start is None else pending_start
            continue
        if phone.symbol in (LENGTH, " ") and out:
            last = out[-1]
            out[-1] = _Segment(last.symbol, last.start, phone.end, last.stress)
            continue
        is_vowel = viseme_class(phone.symbol) in _VOWELS
        stress = pending_stress if is_vowel else 0.0
        if is_vowel:
            pending_stress = 0.0
        start = phone.start if pending_start is None else pending_start
        pending_start = None
        out.append(_Segment(phone.symbol, start, phone.end, stress))
    return out


def mouth_track(phones: Sequence[Phone], fps: float, frames: int) -> FloatArray:
    """Mouth fields from dominance-blended visemes with exact bilabial closure, shape (T, D)."""
    times = np.arange(frames) / fps  # (T,)
    segments = [s for s in _segments(phones) if viseme_class(s.symbol) is not None]
    mouth_idx = [INDEX[name] for name in MOUTH_FIELDS]
    numerator = np.zeros((frames, len(mouth_idx)), np.float64)  # (T, M)
    denominator = np.full(frames, _REST_DOMINANCE, np.float64)  # (T,)
    rest = VISEMES["rest"].targets
    numerator += _REST_DOMINANCE * np.array([rest.get(n, 0.0) for n in MOUTH_FIELDS])
    for seg in segments:
        cls = viseme_class(seg.symbol)
        assert cls is not None
        viseme = VISEMES[cls]
        center, half = 0.5 * (seg.start + seg.end), 0.5 * max(seg.end - seg.start, 1e-3)
        outside = np.maximum(0.0, np.abs(times - center) - half)  # (T,) distance beyond the phone
        dominance = viseme.dominance * np.exp(-((outside / viseme.reach_s) ** 2))  # (T,)
        target = np.array([viseme.targets.get(n, 0.0) for n in MOUTH_FIELDS])  # (M,)
        numerator += dominance[:, None] * target[None, :]
        denominator += dominance
    out = np.zeros((frames, MOTION_DIM), np.float32)
    out[:, mouth_idx] = numerator / denominator[:, None]

    pressed = out[:, INDEX["lips_pressed"]]
    closed = np.zeros(frames, bool)
    for seg in segments:
        if seg.symbol not in BILABIALS:
            continue
        inside = (times >= seg.start) & (times <= seg.end)
        if not inside.any():  # shorter than a frame: seal the nearest frame so the closure is seen
            nearest = int(np.clip(round(0.5 * (seg.start + seg.end) * fps), 0, frames - 1))
            inside[nearest] = True
        closed |= inside
    pressed[:] = np.where(closed, 1.0, np.minimum(pressed, _BILABIAL_OPEN_MAX))
    return out


def _semitones(f0: FloatArray, reference: float) -> FloatArray:
    return np.where(f0 > 0, 12.0 * np.log2(np.maximum(f0, 1.0) / reference), 0.0).astype(np.float32)


def _pulse(times: npt.NDArray[np.float64], start: float, duration: float) -> FloatArray:
    u = (times - start) / duration
    return np.where((u >= 0) & (u < 1), np.sin(np.pi * np.clip(u, 0, 1)) ** 2, 0.0).astype(np.float32)


def prosody_track(
    phones: Sequence[Phone],
    prosody: Prosody,
    fps: float,
    frames: int,
    behaviour: BehaviourConfig,
    rng: np.random.Generator,
) -> tuple[FloatArray, list[float]]:
    """Head and brow motion from prosody, shape (T, D), and the times of phrase ends (for blinks)."""
    times = np.arange(frames) / fps  # (T,)
    out = np.zeros((frames, MOTION_DIM), np.float32)
    f0, energy = prosody.at(times)
    voiced = prosody.f0_hz[prosody.f0_hz > 0]
    reference = float(np.median(voiced)) if voiced.size else 150.0
    semitones = _semitones(f0, reference)  # (T,)
    expressive = behaviour.expressiveness

    # Jaw opening follows loudness around its typical level.
    loud = float(np.percentile(prosody.energy, 95)) if prosody.energy.size else 0.0
    if loud > 0:
        gain = np.clip(0.7 + 0.5 * energy / loud, 0.6, 1.2)
        out[:, INDEX["jaw_open"]] = gain  # a multiplier, applied by ``speech_layer``

    last_nod = -10.0
    for seg in _segments(phones):
        if seg.stress <= 0:
            continue
        span = (times >= seg.start) & (times <= seg.end)
        rise = float(semitones[span].max()) if span.any() else 0.0
        strength = float(np.clip(0.35 * seg.stress + rise / 6.0, 0.0, 1.0))
        center = 0.5 * (seg.start + seg.end)
        if strength < 0.45 or center - last_nod < 0.6:
            continue
        last_nod = center
        amplitude = 0.07 * strength * expressive * float(rng.uniform(0.8, 1.2))
        out[:, INDEX["head_pitch"]] += amplitude * _pulse(times, center - 0.12, 0.4)
        out[:, INDEX["head_pitch"]] -= 0.25 * amplitude * _pulse(times, center + 0.28, 0.25)
        if strength > 0.7:
            brow = 0.55 * strength * expressive
            raise_ = brow * _pulse(times, center - 0.15, 0.5)
            out[:, INDEX["brow_up_l"]] += raise_
            out[:, INDEX["brow_up_r"]] += raise_

    # The head rises a little with pitch (smoothed so it never jitters).
    drift = -0.012 * expressive * np.convolve(semitones, np.ones(9) / 9, mode="same")
    out[:, INDEX["head_pitch"]] += drift.astype(np.float32)

    phrase_ends = [
        p.start for p in phones if p.symbol in PHRASE_ENDS or (p.symbol == "" and p.end - p.start > 0.25)
    ]
    return out, phrase_ends


def speech_layer(
    phones: Sequence[Phone],
    prosody: Prosody,
    fps: float,
    frames: int,
    behaviour: BehaviourConfig,
    rng: np.random.Generator,
) -> tuple[FloatArray, list[float]]:
    """Mouth, accent nods and brows for an utterance (T, D), without blinks or idle motion."""
    mouth = mouth_track(phones, fps, frames)
    head, phrase_ends = prosody_track(phones, prosody, fps, frames, behaviour, rng)
    gain = head[:, INDEX["jaw_open"]].copy()
    head[:, INDEX["jaw_open"]] = 0.0
    if gain.any():
        mouth[:, INDEX["jaw_open"]] *= gain
    return mouth + head, phrase_ends


def speak(
    phones: Sequence[Phone],
    prosody: Prosody,
    fps: float,
    behaviour: BehaviourConfig,
    seed: int = 0,
    frames: int | None = None,
) -> FloatArray:
    """Complete speaking motion (T, D): speech layer plus blinks and idle motion; deterministic."""
    rng = np.random.default_rng(seed)
    end = max((p.end for p in phones), default=0.0)
    frames = frames if frames is not None else max(1, int(np.ceil(end * fps)))
    layer, phrase_ends = speech_layer(phones, prosody, fps, frames, behaviour, rng)
    idle = IdleLayer(fps, behaviour, rng)
    pending = sorted(phrase_ends)
    out = np.empty_like(layer)
    for k in range(frames):
        while pending and pending[0] <= k / fps:
            idle.phrase_end()
            pending.pop(0)
        out[k] = compose(idle.step(), layer[k])
    return clip(out)
