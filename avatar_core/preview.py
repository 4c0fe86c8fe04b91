"""A short scripted clip that shows what a face can do: visemes, blinks, a smile, a nod, gaze shifts."""

from __future__ import annotations

import numpy as np

from avatar_core.config import BehaviourConfig
from avatar_core.motion import INDEX, FloatArray, clip
from avatar_core.teacher.idle import IdleLayer, compose
from avatar_core.teacher.speaking import Phone, mouth_track

# One representative symbol per viseme class, in the order the clip shows them.
VISEME_TOUR = "əapiumfθsʃɹoAl"


def _ramp(times: np.ndarray, start: float, end: float, fade: float = 0.15) -> np.ndarray:
    rise = np.clip((times - start) / fade, 0, 1)
    fall = np.clip((end - times) / fade, 0, 1)
    return np.minimum(rise, fall)


def preview_motion(fps: float, seconds: float = 6.0, seed: int = 0) -> FloatArray:
    """Motion (T, D) for the preview: 40% visemes, then blinks, smile, nod, and gaze/head turns."""
    frames = round(seconds * fps)
    times = np.arange(frames) / fps
    scale = seconds / 6.0
    step = 2.4 * scale / len(VISEME_TOUR)
    phones = [Phone(s, 0.1 + i * step, 0.1 + (i + 1) * step) for i, s in enumerate(VISEME_TOUR)]
    out = mouth_track(phones, fps, frames)  # (T, D)
    talk_end = 0.1 + len(VISEME_TOUR) * step
    after = times > talk_end + 0.1
    out[after] = 0.0

    def at(t: float) -> float:
        return t * scale

    out[:, INDEX["blink_l"]] += np.exp(-(((times - at(2.7)) / 0.04) ** 2))
    out[:, INDEX["blink_r"]] += np.exp(-(((times - at(2.7)) / 0.04) ** 2))
    out[:, INDEX["blink_l"]] += np.exp(-(((times - at(3.05)) / 0.04) ** 2))
    out[:, INDEX["blink_r"]] += np.exp(-(((times - at(3.05)) / 0.04) ** 2))
    smile = 0.9 * _ramp(times, at(3.2), at(4.1))
    out[:, INDEX["smile_l"]] += smile
    out[:, INDEX["smile_r"]] += smile
    out[:, INDEX["squint"]] += 0.4 * smile
    nod = (times >= at(4.1)) & (times < at(4.7))
    out[nod, INDEX["head_pitch"]] += 0.15 * np.sin(np.pi * (times[nod] - at(4.1)) / at(0.3)) ** 2
    out[:, INDEX["brow_up_l"]] += 0.7 * _ramp(times, at(4.1), at(4.6))
    out[:, INDEX["brow_up_r"]] += 0.7 * _ramp(times, at(4.1), at(4.6))
    look = [(4.7, 5.1, -0.7, 0.0, -0.25), (5.1, 5.5, 0.7, 0.0, 0.25), (5.5, 6.0, 0.0, 0.6, 0.0)]
    for start, end, gx, gy, yaw in look:
        w = _ramp(times, at(start), at(end), 0.08)
        out[:, INDEX["gaze_x"]] += gx * w
        out[:, INDEX["gaze_y"]] += gy * w
        out[:, INDEX["head_yaw"]] += yaw * w
    idle = IdleLayer(
        fps, BehaviourConfig(blinks_per_minute=4.0, expressiveness=0.5), np.random.default_rng(seed)
    )
    for k in range(frames):
        out[k] = compose(idle.step(), out[k])
    return clip(out)
