"""Listener metrics on hand-made tracks whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_core.eval.listener import (
    SceneTrack,
    backchannels,
    listener_report,
    motion_energy,
    nod_onsets,
    pauses,
    speech_activity,
)
from avatar_core.motion import INDEX, neutral

FPS = 25.0
RATE = 24_000


def tone(spans: list[tuple[float, float]], duration: float) -> np.ndarray:
    """int16 audio of ``duration`` seconds, a 200 Hz tone inside ``spans``, digital silence elsewhere."""
    t = np.arange(round(duration * RATE)) / RATE
    on = np.zeros(t.size, bool)
    for a, b in spans:
        on |= (t >= a) & (t < b)
    return (on * 8000 * np.sin(2 * np.pi * 200 * t)).astype(np.int16)


def nod(motion: np.ndarray, start: float, amplitude: float = 0.08) -> None:
    """Add the teacher's nod (a sin^2 pitch pulse of 0.45 s) starting at ``start``."""
    k = np.arange(motion.shape[0]) / FPS
    u = (k - start) / 0.45
    inside = (u >= 0) & (u < 1)
    motion[inside, INDEX["head_pitch"]] += amplitude * np.sin(np.pi * u[inside]) ** 2


def test_speech_activity_marks_frames_with_sound() -> None:
    active = speech_activity(tone([(0.2, 0.6)], 1.0), RATE, FPS, 25)
    assert active.tolist() == [0.2 <= k / FPS < 0.6 - 1e-9 for k in range(25)]


def test_pauses_are_silences_inside_speech_while_the_partner_is_quiet() -> None:
    frames = 100  # 4 s
    speaker = np.zeros(frames, bool)
    speaker[0:25] = speaker[35:50] = speaker[55:70] = speaker[90:] = True  # silences: 0.4 s, 0.2 s, 0.8 s
    partner = np.zeros(frames, bool)
    partner[75:85] = True  # the partner talks in the last silence: a turn change
    assert pauses(speaker, partner, FPS) == [(1.0, 1.4)]


def test_nods_are_found_and_idle_sway_is_not() -> None:
    motion = neutral(150)
    t = np.arange(150) / FPS
    motion[:, INDEX["head_pitch"]] = 0.015 * np.sin(2 * np.pi * 0.45 * t)  # the idle layer's largest sway
    assert nod_onsets(motion, FPS) == []
    nod(motion, 2.0)
    onsets = nod_onsets(motion, FPS)
    assert len(onsets) == 1 and 2.0 <= onsets[0] <= 2.25


def test_a_pause_is_answered_only_by_a_nod_within_a_second() -> None:
    heard = [(1.0, 1.4), (3.0, 3.5)]
    assert backchannels(heard, [1.6]) == 1
    assert backchannels(heard, [1.6, 3.9]) == 2
    assert backchannels(heard, [0.9, 4.2]) == 0


def test_motion_energy_ignores_the_mouth() -> None:
    motion = neutral(50)
    motion[::2, INDEX["jaw_open"]] = 0.8  # a chattering jaw
    assert float(motion_energy(motion, FPS).max()) == 0.0
    nod(motion, 0.5)
    assert float(motion_energy(motion, FPS).max()) > 0.0


def test_report_of_a_scene_where_the_listener_behaves() -> None:
    duration, frames = 4.0, 100
    # A speaks 0-1 s and 1.5-3 s (a 0.5 s pause at 1.0 s); B listens, nods at 1.3 s and keeps its mouth shut.
    a_audio = tone([(0.0, 1.0), (1.5, 3.0)], duration)
    b_audio = tone([], duration)
    a_motion, b_motion = neutral(frames), neutral(frames)
    a_motion[0:75:3, INDEX["jaw_open"]] = 0.6  # talking
    a_motion[10:12, INDEX["lips_pressed"]] = 1.0  # the /m/ at 0.4-0.45 s is closed
    a_motion[:75, INDEX["head_yaw"]] = 0.05 * np.sin(np.arange(75) / 3.0)  # a speaker's lively head
    nod(b_motion, 1.3)
    a_speaking = np.arange(frames) < 75
    tracks = [
        SceneTrack("A", a_motion, a_speaking, a_audio, RATE, [(0.4, 0.45)]),
        SceneTrack("B", b_motion, np.zeros(frames, bool), b_audio, RATE, []),
    ]
    report = listener_report(tracks, FPS)
    assert report["pauses"] == 1 and report["answered"] == 1 and report["backchannel"] == 1.0
    assert report["mouth_rest"] == 1.0
    assert report["lip_closure_f1"] == {"A": 1.0, "B": 1.0}
    assert 0.0 < float(str(report["energy_ratio"])) < 1.0


def test_report_counts_an_open_mouth_while_silent() -> None:
    frames = 50
    motion = neutral(frames)
    motion[:10, INDEX["jaw_open"]] = 0.5
    silent = np.zeros(frames, bool)
    audio = tone([], 2.0)
    tracks = [
        SceneTrack("A", motion, silent, audio, RATE),
        SceneTrack("B", neutral(frames), silent, audio, RATE),
    ]
    assert listener_report(tracks, FPS)["mouth_rest"] == pytest.approx(90 / 100)


def test_a_track_with_mismatched_lengths_is_refused() -> None:
    with pytest.raises(ValueError, match="speaking must be"):
        SceneTrack("A", neutral(10), np.zeros(9, bool), tone([], 0.4), RATE)
