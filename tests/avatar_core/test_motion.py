"""The motion schema: one definition, ranges, resampling and smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_core import motion


def test_fields_are_unique_documented_and_neutral_in_range() -> None:
    assert len(set(motion.MOTION_FIELDS)) == motion.MOTION_DIM == 22
    assert all(f.doc and f.low < f.high and f.low <= f.neutral <= f.high for f in motion.FIELDS)
    motion.check(motion.NEUTRAL)


def test_frame_sets_named_fields_and_rejects_unknown() -> None:
    f = motion.frame(jaw_open=0.5, head_yaw=-0.2)
    assert motion.get(f, "jaw_open") == pytest.approx(0.5)
    assert motion.get(f, "head_yaw") == pytest.approx(-0.2)
    with pytest.raises(KeyError, match="jaw_opn"):
        motion.frame(jaw_opn=1.0)


def test_check_names_the_bad_field() -> None:
    bad = motion.frame(gaze_x=1.5)
    with pytest.raises(ValueError, match="gaze_x"):
        motion.check(bad)
    nan = motion.neutral(3)
    nan[1, motion.INDEX["blink_r"]] = np.nan
    with pytest.raises(ValueError, match="blink_r"):
        motion.check(nan)
    assert np.all(motion.clip(bad) <= motion.HIGH)


def test_resample_keeps_time_alignment() -> None:
    src_fps, dst_fps = 86.13, 25.0
    t = np.arange(431) / src_fps  # 5 s
    track = motion.neutral(len(t))
    track[:, motion.INDEX["jaw_open"]] = 0.5 + 0.4 * np.sin(2 * np.pi * 0.5 * t)
    out = motion.resample(track, src_fps, dst_fps)
    assert out.shape == (125, motion.MOTION_DIM)
    expected = 0.5 + 0.4 * np.sin(2 * np.pi * 0.5 * np.arange(125) / dst_fps)
    assert np.abs(out[:, motion.INDEX["jaw_open"]] - expected).max() < 1e-3


def test_smooth_is_zero_phase_and_per_field() -> None:
    track = motion.neutral(101)
    track[50, motion.INDEX["head_pitch"]] = 0.3
    track[50, motion.INDEX["blink_l"]] = 1.0
    out = motion.smooth(track, 25.0, {"head_pitch": 0.08})
    pitch = out[:, motion.INDEX["head_pitch"]]
    assert int(np.argmax(pitch)) == 50 and pitch[45] == pytest.approx(pitch[55])
    assert pitch.max() < 0.3 and pitch.sum() == pytest.approx(0.3, rel=1e-3)
    assert out[50, motion.INDEX["blink_l"]] == 1.0  # untouched


def test_causal_smoother_converges_without_overshoot() -> None:
    smoother = motion.CausalSmoother(25.0, 0.06)
    target = motion.frame(jaw_open=0.8)
    values = [float(motion.get(smoother.step(target), "jaw_open")) for _ in range(50)]
    assert values[-1] == pytest.approx(0.8, abs=1e-3)
    assert max(values) <= 0.8 + 1e-3
