"""The motion frame: the visual vocabulary shared by the joint model, the procedural teacher and renderers.

A motion frame is a float32 vector of ``MOTION_DIM`` named fields; a motion track is an array of shape
``(T, MOTION_DIM)`` at a frame rate. Fields, their ranges and their neutral values are defined once, in
``FIELDS``; everything else (index lookup, clipping, resampling, smoothing) derives from it.

Conventions: image coordinates as the viewer sees the avatar. ``gaze_x``/``head_yaw`` > 0 look/turn to
the viewer's right, ``gaze_y`` > 0 looks up, ``head_pitch`` > 0 tips the chin down (a nod is a positive
pitch pulse), ``head_roll`` > 0 tilts the head clockwise. Translations are fractions of the face height;
``head_z`` > 0 moves toward the camera.

Letters in shape comments: T frames, D = MOTION_DIM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter1d

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class MotionField:
    """One named channel of the motion frame."""

    name: str
    low: float
    high: float
    neutral: float
    doc: str


FIELDS: tuple[MotionField, ...] = (
    # Mouth and jaw
    MotionField("jaw_open", 0.0, 1.0, 0.0, "jaw opening; 1 = widest open vowel (about 25 mm)"),
    MotionField("mouth_wide", 0.0, 1.0, 0.0, "lip corners spread sideways, as in /i/ and /s/"),
    MotionField("mouth_round", 0.0, 1.0, 0.0, "lips rounded and pushed forward, as in /u/, /o/, /w/"),
    MotionField("lips_pressed", 0.0, 1.0, 0.0, "lips closed against each other; 1 = sealed, as in /p b m/"),
    MotionField("upper_lip_up", 0.0, 1.0, 0.0, "upper lip raised, showing upper teeth"),
    MotionField(
        "lower_lip_down", -1.0, 1.0, 0.0, "lower lip dropped (>0, shows lower teeth) or tucked up (<0, /f v/)"
    ),
    # Expression
    MotionField("smile_l", 0.0, 1.0, 0.0, "left mouth corner (viewer's right) pulled up and back"),
    MotionField("smile_r", 0.0, 1.0, 0.0, "right mouth corner (viewer's left) pulled up and back"),
    MotionField("brow_up_l", 0.0, 1.0, 0.0, "left brow raised"),
    MotionField("brow_up_r", 0.0, 1.0, 0.0, "right brow raised"),
    MotionField("brow_down", 0.0, 1.0, 0.0, "both brows lowered and drawn together (frown, focus)"),
    # Eyes
    MotionField("blink_l", 0.0, 1.0, 0.0, "left eyelid closure; 1 = closed"),
    MotionField("blink_r", 0.0, 1.0, 0.0, "right eyelid closure; 1 = closed"),
    MotionField("squint", 0.0, 1.0, 0.0, "lower lids raised, as in a genuine smile"),
    MotionField("gaze_x", -1.0, 1.0, 0.0, "horizontal gaze; +-1 = about +-30 degrees, + = viewer's right"),
    MotionField("gaze_y", -1.0, 1.0, 0.0, "vertical gaze; +-1 = about +-20 degrees, + = up"),
    # Head rotation (radians) and translation (fractions of the face height)
    MotionField("head_pitch", -0.5, 0.5, 0.0, "head pitch in radians; + = chin down (nod)"),
    MotionField("head_yaw", -0.6, 0.6, 0.0, "head yaw in radians; + = turn to the viewer's right"),
    MotionField("head_roll", -0.4, 0.4, 0.0, "head roll in radians; + = tilt clockwise"),
    MotionField("head_x", -0.2, 0.2, 0.0, "head shift right, in face heights"),
    MotionField("head_y", -0.2, 0.2, 0.0, "head shift down, in face heights"),
    MotionField("head_z", -0.2, 0.2, 0.0, "head shift toward the camera, in face heights"),
)

MOTION_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS)
MOTION_DIM = len(FIELDS)
INDEX: Mapping[str, int] = {name: i for i, name in enumerate(MOTION_FIELDS)}
LOW: FloatArray = np.array([f.low for f in FIELDS], np.float32)  # (D,)
HIGH: FloatArray = np.array([f.high for f in FIELDS], np.float32)  # (D,)
NEUTRAL: FloatArray = np.array([f.neutral for f in FIELDS], np.float32)  # (D,)

MOUTH_FIELDS = ("jaw_open", "mouth_wide", "mouth_round", "lips_pressed", "upper_lip_up", "lower_lip_down")
HEAD_ROTATION = ("head_pitch", "head_yaw", "head_roll")
HEAD_TRANSLATION = ("head_x", "head_y", "head_z")


def frame(**values: float) -> FloatArray:
    """A motion frame: the neutral pose with the named fields set, e.g. ``frame(jaw_open=0.6)``."""
    out = NEUTRAL.copy()
    for name, value in values.items():
        if name not in INDEX:
            raise KeyError(f"unknown motion field {name!r}; fields: {', '.join(MOTION_FIELDS)}")
        out[INDEX[name]] = value
    return out


def neutral(frames: int) -> FloatArray:
    """A motion track holding the neutral pose, shape (T, D)."""
    return np.tile(NEUTRAL, (frames, 1))


def clip(values: FloatArray) -> FloatArray:
    """Clamp a frame (D,) or track (T, D) into the valid ranges."""
    return np.clip(values, LOW, HIGH).astype(np.float32, copy=False)


def check(values: npt.NDArray[np.floating]) -> None:
    """Raise ``ValueError`` naming the field if a frame or track has the wrong shape, NaNs or out-of-range
    values (a small tolerance allows float rounding)."""
    if values.shape[-1] != MOTION_DIM:
        raise ValueError(f"a motion frame has {MOTION_DIM} fields, got shape {values.shape}")
    bad = ~np.isfinite(values)
    bad |= (values < LOW - 1e-4) | (values > HIGH + 1e-4)
    if bad.any():
        column = int(np.argwhere(bad)[0][-1])
        f = FIELDS[column]
        raise ValueError(f"motion field {f.name} is outside [{f.low}, {f.high}] or not finite")


def get(values: FloatArray, name: str) -> FloatArray:
    """One field of a frame (scalar array) or of a track, shape (T,)."""
    return values[..., INDEX[name]]


def resample(track: FloatArray, src_fps: float, dst_fps: float, frames: int | None = None) -> FloatArray:
    """Linear resampling of a (T, D) track from ``src_fps`` to ``dst_fps``.

    Frame ``k`` of the result is the track at time ``k / dst_fps``; past the end the last frame holds.
    """
    if track.ndim != 2 or track.shape[1] != MOTION_DIM:
        raise ValueError(f"expected a (T, {MOTION_DIM}) track, got {track.shape}")
    if frames is None:
        frames = max(1, round(track.shape[0] * dst_fps / src_fps))
    src_t = np.arange(track.shape[0]) / src_fps  # (T,)
    dst_t = np.arange(frames) / dst_fps  # (T',)
    out = np.empty((frames, MOTION_DIM), np.float32)
    for d in range(MOTION_DIM):
        out[:, d] = np.interp(dst_t, src_t, track[:, d])
    return out


def gaussian_smooth(values: npt.NDArray[np.floating], sigma_frames: float) -> npt.NDArray[np.float64]:
    """Zero-phase Gaussian smoothing of a (T,) series: kernel radius ceil(3 sigma) (at least 1 frame),
    the ends held (scipy's ``gaussian_filter1d`` in ``nearest`` mode)."""
    series = np.asarray(values, dtype=np.float64)
    if sigma_frames <= 0 or series.size < 2:
        return series
    radius = max(1, int(np.ceil(3.0 * sigma_frames)))
    smoothed: npt.NDArray[np.float64] = gaussian_filter1d(series, sigma_frames, mode="nearest", radius=radius)
    return smoothed


def smooth(track: FloatArray, fps: float, sigma_s: float | Mapping[str, float] = 0.03) -> FloatArray:
    """Zero-phase Gaussian smoothing of a (T, D) track (offline use), as :func:`gaussian_smooth`.

    ``sigma_s`` is one value in seconds, or a mapping field -> seconds (unlisted fields untouched), so
    blinks can stay sharp while the head moves smoothly.
    """
    sigmas = sigma_s if isinstance(sigma_s, Mapping) else dict.fromkeys(MOTION_FIELDS, sigma_s)
    out = track.astype(np.float32, copy=True)
    for name, sigma in sigmas.items():
        out[:, INDEX[name]] = gaussian_smooth(track[:, INDEX[name]], sigma * fps)
    return out


class CausalSmoother:
    """Streaming smoothing: a critically damped second-order follower per field (no overshoot).

    ``step(target)`` moves the state toward ``target`` with the given time constant; use it where
    future frames are unknown (listening, barge-in transitions).
    """

    def __init__(self, fps: float, time_constant_s: float = 0.06, start: FloatArray | None = None) -> None:
        self.dt = 1.0 / fps
        self.omega = 1.0 / max(time_constant_s, 1e-4)
        self.position = (NEUTRAL if start is None else start).astype(np.float32).copy()
        self.velocity = np.zeros(MOTION_DIM, np.float32)

    def step(self, target: FloatArray) -> FloatArray:
        """Advance one frame toward ``target``; returns the new frame (D,)."""
        # Semi-implicit Euler of x'' = w^2 (target - x) - 2 w x'  (critically damped spring).
        accel = self.omega**2 * (target - self.position) - 2.0 * self.omega * self.velocity
        self.velocity = (self.velocity + self.dt * accel).astype(np.float32)
        self.position = (self.position + self.dt * self.velocity).astype(np.float32)
        return clip(self.position.copy())
