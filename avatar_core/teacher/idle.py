"""The always-on layer: blinks, gaze micro-saccades, and small head and breathing motion.

It runs under both speaking and listening so a blink never restarts at an utterance boundary. Every
random choice comes from the ``numpy.random.Generator`` it is given, so a seed fixes the output.
"""

from __future__ import annotations

import numpy as np

from avatar_core.config import BehaviourConfig
from avatar_core.motion import INDEX, MOTION_DIM, FloatArray

BLINK_MIN_S, BLINK_MAX_S = 0.10, 0.15
_MIN_BLINK_GAP_S = 0.8


def blink_shape(u: float) -> float:
    """Lid closure at phase ``u`` in [0, 1) of a blink: fast close (35%), slower open."""
    if u < 0.0 or u >= 1.0:
        return 0.0
    if u < 0.35:
        return float(np.sin(0.5 * np.pi * u / 0.35))
    return float(np.cos(0.5 * np.pi * (u - 0.35) / 0.65))


class IdleLayer:
    """Steps one frame at a time; ``phrase_end`` asks for a blink soon (people blink at phrase ends)."""

    def __init__(self, fps: float, behaviour: BehaviourConfig, rng: np.random.Generator) -> None:
        self.fps = fps
        self.behaviour = behaviour
        self.rng = rng
        self.t = 0.0
        self.mean_gap_s = 60.0 / behaviour.blinks_per_minute
        self.next_blink = self._gap() * rng.uniform(0.2, 1.0)
        self.blink_start = -10.0
        self.blink_len = 0.12
        # Slow head sway: three sinusoids per axis with random frequencies and phases.
        self.sway_freq = rng.uniform(0.07, 0.45, size=(3, 3))  # (axis, component) Hz
        self.sway_phase = rng.uniform(0.0, 2 * np.pi, size=(3, 3))
        self.gaze = np.zeros(2, np.float32)
        self.next_saccade = rng.uniform(0.5, 2.0)

    def _gap(self) -> float:
        # Jittered-regular intervals keep the rate near the configured one over a minute.
        return float(self.mean_gap_s * self.rng.uniform(0.6, 1.4))

    def phrase_end(self, probability: float = 0.7) -> None:
        """A phrase just ended: blink within 50-200 ms with ``probability`` (this resets the schedule)."""
        if self.t - self.blink_start < _MIN_BLINK_GAP_S or self.rng.uniform() > probability:
            return
        self.next_blink = min(self.next_blink, self.t + float(self.rng.uniform(0.05, 0.2)))

    def step(self) -> FloatArray:
        """The next frame of idle motion (D,)."""
        out = np.zeros(MOTION_DIM, np.float32)
        t = self.t
        if t >= self.next_blink:
            self.blink_start = t
            self.blink_len = float(self.rng.uniform(BLINK_MIN_S, BLINK_MAX_S))
            self.next_blink = t + self.blink_len + self._gap()
        closure = blink_shape((t - self.blink_start) / self.blink_len)
        out[INDEX["blink_l"]] = out[INDEX["blink_r"]] = closure

        scale = 0.015 * self.behaviour.expressiveness
        sway = np.sin(2 * np.pi * self.sway_freq * t + self.sway_phase).sum(axis=1) / 3.0  # (3,)
        out[INDEX["head_pitch"]] = scale * sway[0]
        out[INDEX["head_yaw"]] = 1.5 * scale * sway[1]
        out[INDEX["head_roll"]] = 0.8 * scale * sway[2]
        out[INDEX["head_y"]] = 0.004 * np.sin(2 * np.pi * 0.25 * t)  # breathing

        if t >= self.next_saccade:
            self.gaze = self.rng.normal(0.0, 0.06, size=2).astype(np.float32)
            self.next_saccade = t + float(self.rng.uniform(0.6, 2.5))
        out[INDEX["gaze_x"]], out[INDEX["gaze_y"]] = self.gaze
        self.t += 1.0 / self.fps
        return out


def compose(base: FloatArray, layer: FloatArray) -> FloatArray:
    """Idle ``base`` plus a speaking or listening ``layer``: offsets add, eyelid closure takes the max."""
    out = base + layer
    for name in ("blink_l", "blink_r"):
        out[..., INDEX[name]] = np.maximum(base[..., INDEX[name]], layer[..., INDEX[name]])
    return out
