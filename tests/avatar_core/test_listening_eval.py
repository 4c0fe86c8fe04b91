"""Learned vs teacher listening: the recorded-user report on constructed motion, the targets and the
verdict that decides the default."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avatar_core.eval.listening_compare import TARGETS, meets_targets, recorded_user_report, verdict
from avatar_core.motion import INDEX, NEUTRAL

FPS, RATE = 25.0, 24_000
SPEECH = ((0.0, 1.0), (1.6, 2.6), (3.2, 4.2))  # seconds: two pauses of 0.6 s between


def user_audio() -> np.ndarray:
    rng = np.random.default_rng(0)
    audio = np.zeros(int(4.6 * RATE), np.int16)
    for a, b in SPEECH:
        audio[int(a * RATE) : int(b * RATE)] = (rng.standard_normal(int((b - a) * RATE)) * 3000).astype(
            np.int16
        )
    return audio


def listener(nod_after: list[float], jaw: float = 0.0) -> np.ndarray:
    frames = int(4.6 * FPS)
    motion = np.tile(NEUTRAL, (frames, 1)).astype(np.float32)  # (T, D)
    motion[:, INDEX["jaw_open"]] = jaw
    for start in nod_after:
        k = int(start * FPS)
        motion[k : k + 5, INDEX["head_pitch"]] += np.linspace(0.0, 0.1, 5, dtype=np.float32)
        motion[k + 5 : k + 10, INDEX["head_pitch"]] += np.linspace(0.1, 0.0, 5, dtype=np.float32)
    return motion


def test_a_listener_that_nods_in_every_pause_meets_the_targets() -> None:
    report = recorded_user_report(user_audio(), RATE, listener([1.2, 2.8]), FPS)
    assert report["pauses"] == 2 and report["answered"] == 2
    assert report["backchannel"] == 1.0 and report["mouth_rest"] == 1.0
    assert meets_targets(report) == {"backchannel": True, "mouth_rest": True}


def test_a_still_listener_with_an_open_mouth_misses_both() -> None:
    report = recorded_user_report(user_audio(), RATE, listener([], jaw=0.3), FPS)
    assert report["pauses"] == 2 and report["answered"] == 0
    assert report["mouth_rest"] == 0.0
    assert meets_targets(report) == {"backchannel": False, "mouth_rest": False}
    assert not meets_targets({"backchannel": math.nan, "mouth_rest": 1.0})["backchannel"]  # no pauses


def test_the_model_is_the_default_only_when_it_meets_everything() -> None:
    good = {"backchannel": 0.8, "mouth_rest": 0.99}
    poor = {"backchannel": 0.3, "mouth_rest": 0.99}
    both_good = {"teacher": {"scene": good}, "model": {"scene": good, "recorded_user": good}}
    assert verdict(both_good, knobs_act_on_model=True)["default"] == "model"
    kept = verdict(both_good, knobs_act_on_model=False)
    assert kept["default"] == "teacher" and "backchannel_rate" in kept["reasons"][0]
    missed = verdict({"teacher": {"scene": good}, "model": {"scene": good, "recorded_user": poor}}, True)
    assert missed["default"] == "teacher"
    assert missed["reasons"] == [
        f"model misses backchannel >= {TARGETS['backchannel']} on recorded_user (0.3)"
    ]
    with pytest.raises(ValueError, match="need results"):
        verdict({"model": {"scene": good}}, True)
