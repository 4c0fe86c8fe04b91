"""Learned listening against the teacher's: the listener metrics of both, side by side, and the verdict.

Each persona listens either with the procedural teacher layer (``behaviour.listening: teacher``) or with
the joint model's listening mode (``behaviour.listening: model``). The same scenes are measured with
:func:`avatar_core.eval.listener.listener_report` for both; a recorded user (a voice with pauses, no
face of the avatar's own) is measured the same way with :func:`recorded_user_report`. The model may
become the default only if it meets :data:`TARGETS` everywhere *and* the persona's knobs
(``backchannel_rate``, ``expressiveness``, ``smile_mirroring``) act on it (:func:`verdict`).

Letters in shape comments: T video frames, D = MOTION_DIM, S audio samples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from avatar_core.eval.listener import SceneTrack, listener_report, speech_activity
from avatar_core.motion import NEUTRAL, FloatArray

# The listener targets: the share of the speaker's pauses over 300 ms answered by a backchannel,
# and the share of the silent frames with the jaw near rest.
TARGETS: dict[str, float] = {"backchannel": 0.6, "mouth_rest": 0.95}
MODES = ("teacher", "model")


def recorded_user_report(
    user_audio: npt.NDArray[np.int16], sample_rate: int, listener_motion: FloatArray, fps: float
) -> dict[str, Any]:
    """Listener metrics for an avatar that only listened to a recorded user.

    ``user_audio`` (S,): the user's voice from time 0; ``listener_motion`` (T, D): the avatar's motion
    at ``fps`` over the same time. The user is a track with a still face (it is heard, not drawn), so
    only the avatar's figures as a listener are kept: backchannel, pauses, answered, mouth_rest and
    the listening motion energy.
    """
    frames = listener_motion.shape[0]
    user = SceneTrack(
        "user",
        np.tile(NEUTRAL, (frames, 1)).astype(np.float32),  # (T, D)
        speech_activity(user_audio, sample_rate, fps, frames),
        user_audio,
        sample_rate,
    )
    silent = np.zeros(round(frames * sample_rate / fps), np.int16)  # (S,) the avatar says nothing
    avatar = SceneTrack(
        "avatar", listener_motion.astype(np.float32), np.zeros(frames, bool), silent, sample_rate
    )
    report = listener_report([user, avatar], fps)
    mine = report["avatars"]["avatar"]  # type: ignore[index]
    return {
        "backchannel": report["backchannel"],
        "pauses": report["pauses"],
        "answered": report["answered"],
        "mouth_rest": mine["mouth_rest"],
        "nods": mine["nods"],
        "listening_energy": mine["listening_energy"],
    }


def meets_targets(report: Mapping[str, Any]) -> dict[str, bool]:
    """Which of :data:`TARGETS` a report meets (a scene without pauses cannot meet the backchannel one)."""
    out = {}
    for key, target in TARGETS.items():
        value = report.get(key)
        out[key] = isinstance(value, int | float) and not math.isnan(value) and value >= target
    return out


def verdict(
    results: Mapping[str, Mapping[str, Mapping[str, Any]]], knobs_act_on_model: bool
) -> dict[str, Any]:
    """``results[mode][scene]``: a report per listening mode and scene -> which default the numbers allow.

    The model becomes the default only if every scene meets every target with it and the persona's
    knobs act on it; otherwise the teacher stays, and ``reasons`` says why.
    """
    if set(results) != set(MODES):
        raise ValueError(f"need results for {MODES}, got {sorted(results)}")
    checks = {
        mode: {scene: meets_targets(r) for scene, r in scenes.items()} for mode, scenes in results.items()
    }
    reasons = [
        f"model misses {key} >= {TARGETS[key]} on {scene} ({results['model'][scene].get(key)})"
        for scene, met in checks["model"].items()
        for key, ok in met.items()
        if not ok
    ]
    if not knobs_act_on_model:
        reasons.append(
            "the persona's backchannel_rate, expressiveness and smile_mirroring do not act on the model's "
            "listening (it is conditioned on the partner only)"
        )
    return {
        "targets": dict(TARGETS),
        "meets": checks,
        "default": "teacher" if reasons else "model",
        "reasons": reasons,
    }
