"""Evaluation metrics and the report writer on constructed inputs with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from avatar_core import motion
from avatar_core.config import BehaviourConfig
from avatar_core.eval import (
    EXPRESSION_FIELDS,
    FACE_FIELDS,
    HEAD_FIELDS,
    beat_align,
    beat_align_scores,
    bilabial_intervals,
    diversity,
    dtw_path,
    expression_vectors,
    frechet_distance,
    kinematic_beats,
    lip_closure_f1,
    mel_cepstral_distortion,
    normalize_text,
    onset_strength,
    peaks,
    pooled_closure_f1,
    word_error_rate,
    word_errors,
    write_report,
)
from avatar_core.eval.judge import canonical, spoken_wer
from avatar_core.teacher.speaking import Phone, Prosody, speak

FPS = 25.0

# ---------------------------------------------------------------------------------------------- WER


def test_normalize_text_lowercases_strips_punctuation_and_collapses_spaces() -> None:
    assert normalize_text("  Hello,   World! Don't-stop… 42 ") == "hello world dont stop 42"


def test_word_error_counts_and_rates() -> None:
    assert word_error_rate(["Hello there, friend."], ["hello there friend"]) == 0.0
    sub = word_errors("the cat sat", "the dog sat")
    assert (sub.substitutions, sub.deletions, sub.insertions) == (1, 0, 0)
    ins = word_errors("the cat sat", "the cat sat down")
    assert (ins.substitutions, ins.deletions, ins.insertions) == (0, 0, 1)
    dele = word_errors("the cat sat down", "the sat down")
    assert (dele.substitutions, dele.deletions, dele.insertions) == (0, 1, 0)
    # Corpus level: (1 + 1 + 1) errors over (3 + 3 + 4) reference words, not the mean of per-line rates.
    refs = ["the cat sat", "the cat sat", "the cat sat down"]
    hyps = ["the dog sat", "the cat sat down", "the sat down"]
    assert word_error_rate(refs, hyps) == pytest.approx(3 / 10)
    assert word_error_rate(["a b"], [""]) == 1.0
    assert word_error_rate(["a"], ["x y z"]) == 3.0  # one substitution + two insertions


def test_word_error_rate_rejects_unpaired_or_empty_references() -> None:
    with pytest.raises(ValueError, match="pair"):
        word_error_rate(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="no words"):
        word_error_rate(["..."], ["hello"])


def test_spoken_wer_reads_numbers_the_same_however_whisper_writes_them() -> None:
    # Transcripts Whisper tiny.en wrote for correctly spoken joint-model and Kokoro sentences (2026-12-05).
    assert spoken_wer(["The lab is open until 6:45."], ["The lab is open. Until 645"]) == 0.0
    assert spoken_wer(["Please call (253) 555-5227."], ["Please call 253. 555. 5227,"]) == 0.0
    assert spoken_wer(["It opens at 21:30."], ["It opens at 2130."]) == 0.0
    assert spoken_wer(["Room 204, please."], ["Room two oh four, please."]) == 0.0
    assert canonical("Your favourite colour?") == canonical("your favorite color")
    # A wrong digit is still an error: the phone number is one word of the reference, and it is wrong.
    assert spoken_wer(["Please call (253) 555-5227."], ["Please call 253 555 5228."]) == pytest.approx(1 / 3)
    assert spoken_wer(["A big brown bear."], ["Big brown bear."]) == pytest.approx(1 / 4)


# ----------------------------------------------------------------------------------- lip closure

# Three bilabials at frames 10-12, 30-31 and 50 (0.4-0.48 s, 1.2-1.24 s, 2.0 s at 25 fps).
BILABIALS = [(0.40, 0.48), (1.20, 1.24), (2.00, 2.00)]


def _closures(*runs: tuple[int, int], frames: int = 75) -> np.ndarray:
    track = np.zeros(frames, np.float32)
    for first, last in runs:
        track[first : last + 1] = 1.0
    return track


def test_perfect_closure_gives_f1_one() -> None:
    scores = lip_closure_f1(_closures((10, 12), (30, 31), (50, 50)), FPS, BILABIALS, tolerance_frames=0)
    assert (scores["precision"], scores["recall"], scores["f1"]) == (1.0, 1.0, 1.0)


def test_missing_closure_lowers_recall_only() -> None:
    scores = lip_closure_f1(_closures((10, 12), (30, 31)), FPS, BILABIALS)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["precision"] == 1.0
    assert scores["f1"] == pytest.approx(2 * (2 / 3) / (1 + 2 / 3))


def test_no_closures_gives_zero_recall_and_f1() -> None:
    scores = lip_closure_f1(np.zeros(75), FPS, BILABIALS)
    assert scores["recall"] == 0.0
    assert scores["f1"] == 0.0


def test_shifted_closures_match_within_tolerance_only() -> None:
    # One frame late: inside the 1-frame tolerance.
    late = _closures((11, 13), (31, 32), (51, 51))
    assert lip_closure_f1(late, FPS, BILABIALS, tolerance_frames=1)["f1"] == 1.0
    # Three frames late for the last bilabial only: a miss and a false alarm.
    shifted = _closures((10, 12), (30, 31), (53, 53))
    scores = lip_closure_f1(shifted, FPS, BILABIALS, tolerance_frames=1)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["precision"] == pytest.approx(2 / 3)


def test_closures_everywhere_else_lower_precision() -> None:
    extra = _closures((10, 12), (20, 22), (30, 31), (40, 40), (50, 50), (65, 70))
    scores = lip_closure_f1(extra, FPS, BILABIALS)
    assert scores["recall"] == 1.0
    assert scores["precision"] == pytest.approx(3 / 6)
    # Below the threshold is open: lips at 0.4 throughout close nothing.
    assert lip_closure_f1(np.full(75, 0.4), FPS, BILABIALS)["recall"] == 0.0


def test_pooled_closure_scores_sum_counts_over_clips() -> None:
    a = lip_closure_f1(_closures((10, 12), (30, 31), (50, 50)), FPS, BILABIALS)
    b = lip_closure_f1(_closures((10, 12), (60, 62)), FPS, BILABIALS)
    pooled = pooled_closure_f1([a, b])
    assert pooled["recall"] == pytest.approx(4 / 6)
    assert pooled["precision"] == pytest.approx(4 / 5)


def test_bilabial_intervals_follow_the_teacher_timing_rules() -> None:
    phones = [
        Phone("n", 0.0, 0.1),
        Phone("ʌ", 0.1, 0.2),
        Phone("m", 0.2, 0.25),
        Phone("b", 0.25, 0.3),  # /mb/ is one closure
        Phone("ɚ", 0.3, 0.4),
        Phone("ˈ", 0.4, 0.42),  # stress mark: its time goes to the next phone
        Phone("p", 0.42, 0.5),
        Phone("ɑ", 0.5, 0.6),
    ]
    assert bilabial_intervals(phones) == [(0.2, 0.3), (0.4, 0.5)]


@pytest.mark.parametrize("step", [0.03, 0.08])
def test_the_teacher_scores_perfect_closure_on_its_own_phones(step: float) -> None:
    phones, t = [Phone("", 0.0, 0.3)], 0.3
    for symbol in "hɛlˈOmaɪbɹˈAvˈpaʊnʌmbɚ":
        phones.append(Phone(symbol, t, t + step))
        t += step
    phones.append(Phone("", t, t + 0.3))
    prosody = Prosody(FPS, np.full(100, 150.0, np.float32), np.full(100, 0.1, np.float32))
    track = speak(phones, prosody, FPS, BehaviourConfig(), seed=0)
    intervals = bilabial_intervals(phones)
    assert len(intervals) == 4  # m, b, p, and /mb/ as one
    scores = lip_closure_f1(motion.get(track, "lips_pressed"), FPS, intervals, tolerance_frames=0)
    assert scores["f1"] == 1.0


# ------------------------------------------------------------------------------- onsets and beats


def test_onset_strength_peaks_at_clicks() -> None:
    rate = 24000
    rng = np.random.default_rng(0)
    audio = (1e-4 * rng.standard_normal(3 * rate)).astype(np.float32)  # faint noise floor
    click_times = [0.52, 1.2, 1.96, 2.4]
    for t in click_times:
        start = int(t * rate)
        audio[start : start + 48] += 0.8 * rng.standard_normal(48).astype(np.float32)
    onsets = onset_strength(audio, rate, FPS)
    assert onsets.shape == (75,)
    assert peaks(onsets).tolist() == [round(t * FPS) for t in click_times]
    assert onset_strength(audio, rate, FPS, frames=80).shape == (80,)


def test_peaks_are_local_maxima_above_the_mean() -> None:
    x = np.array([0, 1, 0, 0, 5, 4, 0, 0, 6, 6, 0, 0.2, 0], float)
    assert peaks(x, delta=0.0).tolist() == [4, 8]  # 1 and 0.2 are below the mean (about 1.7)
    assert peaks(x, delta=0.0, min_distance=5).tolist() == [8]


def _nodding(frames: int = 100, period: int = 20) -> np.ndarray:
    """Head pitch cos(2 pi t / period): the speed is slowest at t = 0, 10, 20, ... frames."""
    track = motion.neutral(frames)
    t = np.arange(frames)
    track[:, motion.INDEX["head_pitch"]] = 0.1 * np.cos(2 * np.pi * t / period)
    return track


def test_kinematic_beats_are_velocity_minima() -> None:
    assert kinematic_beats(_nodding(), FPS, HEAD_FIELDS).tolist() == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert kinematic_beats(motion.neutral(50), FPS, HEAD_FIELDS).size == 0  # no movement, no beats


def test_beat_align_is_one_on_coincident_beats_and_follows_the_gaussian() -> None:
    nod = _nodding()
    assert beat_align(nod, FPS, [10, 30, 50], HEAD_FIELDS) == pytest.approx(1.0)
    # Every audio beat 2 frames from the nearest kinematic beat: exp(-2^2 / (2 * 3^2)).
    assert beat_align(nod, FPS, [12, 32, 48], HEAD_FIELDS) == pytest.approx(math.exp(-4 / 18))
    # Mixed: distances 0 and 4 frames.
    expected = (1.0 + math.exp(-16 / 18)) / 2
    assert beat_align(nod, FPS, [10, 34], HEAD_FIELDS, sigma=3.0) == pytest.approx(expected)
    assert beat_align(motion.neutral(100), FPS, [10], HEAD_FIELDS) == 0.0
    assert math.isnan(beat_align(nod, FPS, [], HEAD_FIELDS))


def test_field_groups_exclude_articulation_and_blinks() -> None:
    assert set(HEAD_FIELDS) == set(motion.HEAD_ROTATION + motion.HEAD_TRANSLATION)
    assert not set(FACE_FIELDS) & {*motion.MOUTH_FIELDS, "blink_l", "blink_r", "gaze_x", "gaze_y"}
    assert set(FACE_FIELDS) <= set(EXPRESSION_FIELDS)


def test_beat_align_scores_on_speech_like_clicks() -> None:
    rate = 24000
    rng = np.random.default_rng(1)
    audio = (1e-4 * rng.standard_normal(4 * rate)).astype(np.float32)
    for frame in (10, 30, 50, 70):
        start = int(frame / FPS * rate)
        audio[start : start + 48] += 0.8 * rng.standard_normal(48).astype(np.float32)
    nod = _nodding()
    scores = beat_align_scores(nod, FPS, audio, rate)
    assert scores["head"] == pytest.approx(1.0)
    assert scores["face"] == 0.0  # the face does not move


# -------------------------------------------------------------------------- Fréchet and diversity


def _exact_gaussian_samples(mean: np.ndarray, std: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Samples whose sample mean and (unbiased) covariance are exactly mean and diag(std^2)."""
    x = np.random.default_rng(seed).standard_normal((n, mean.size))
    x -= x.mean(axis=0)
    x = x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False)).T)  # sample covariance = I
    samples: np.ndarray = x * std + mean
    return samples


def test_frechet_distance_closed_forms() -> None:
    a = _exact_gaussian_samples(np.zeros(4), np.ones(4), 500, seed=0)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift))
    # Diagonal covariances: ||mu1 - mu2||^2 + sum (s1 - s2)^2.
    s1, s2 = np.array([1.0, 2.0, 0.5, 1.0]), np.array([2.0, 1.0, 0.5, 3.0])
    b = _exact_gaussian_samples(shift, s1, 400, seed=1)
    c = _exact_gaussian_samples(np.zeros(4), s2, 300, seed=2)
    assert frechet_distance(b, c) == pytest.approx(float(shift @ shift + np.sum((s1 - s2) ** 2)))
    # Singular covariances (a constant field) stay finite and exact.
    d = a.copy()
    d[:, 3] = 0.0
    assert frechet_distance(d, d + shift) == pytest.approx(float(shift @ shift))


def test_expression_vectors_select_the_expression_fields() -> None:
    track = motion.neutral(5)
    track[:, motion.INDEX["smile_l"]] = 0.7
    track[:, motion.INDEX["head_yaw"]] = 0.3
    vectors = expression_vectors(track)
    assert vectors.shape == (5, len(EXPRESSION_FIELDS))
    assert vectors[:, EXPRESSION_FIELDS.index("smile_l")].tolist() == pytest.approx([0.7] * 5)
    assert np.count_nonzero(vectors) == 5  # head pose is not an expression


def test_diversity_of_identical_and_known_clips() -> None:
    clip = _nodding(40)
    assert diversity([clip, clip.copy(), clip.copy()]) == 0.0
    a, b, c = motion.neutral(10), motion.neutral(10), motion.neutral(10)
    b[:, motion.INDEX["jaw_open"]] = 0.3  # mean differs by 0.3
    c[::2, motion.INDEX["jaw_open"]] = 0.4  # mean 0.2, std 0.2
    expected = (0.3 + math.hypot(0.2, 0.2) + math.hypot(0.1, 0.2)) / 3
    assert diversity([a, b, c]) == pytest.approx(expected)
    with pytest.raises(ValueError, match="at least 2"):
        diversity([a])


# ----------------------------------------------------------------------------------------- MCD


def test_mcd_zero_for_identical_and_known_for_a_constant_offset() -> None:
    c = np.random.default_rng(0).standard_normal((60, 40))
    assert mel_cepstral_distortion(c, c) == 0.0
    shifted = c + 0.1
    shifted[:, 0] += 5.0  # energy is excluded
    expected = 10 / math.log(10) * math.sqrt(2 * 39 * 0.1**2)
    assert mel_cepstral_distortion(c, shifted, align="none") == pytest.approx(expected)
    with pytest.raises(ValueError, match="dtw"):
        mel_cepstral_distortion(c, c[:50], align="none")


def test_mcd_dtw_undoes_a_time_stretch() -> None:
    c = np.random.default_rng(1).standard_normal((50, 40))
    slow = np.repeat(c, 2, axis=0)  # same speech at half speed
    assert mel_cepstral_distortion(c, slow, align="dtw") == pytest.approx(0.0)
    assert mel_cepstral_distortion(slow, c, align="dtw", band=5) == pytest.approx(0.0)


def test_dtw_path_is_monotonic_and_pinned() -> None:
    rng = np.random.default_rng(2)
    path = dtw_path(rng.standard_normal((17, 3)), rng.standard_normal((23, 3)))
    assert path[0].tolist() == [0, 0] and path[-1].tolist() == [16, 22]
    steps = np.diff(path, axis=0)
    assert ((steps >= 0) & (steps <= 1)).all() and (steps.sum(axis=1) >= 1).all()


# -------------------------------------------------------------------------------------- report


def test_write_report_writes_json_markdown_and_plots_with_marks(tmp_path: Path) -> None:
    results = {
        "teacher": {"wer": 0.05, "lip_closure_f1": 1.0, "beat_align_head": 0.3},
        "joint": {"wer": 0.2, "lip_closure_f1": 0.97, "beat_align_head": float("nan")},
        "cascade": {"wer": 0.08, "lip_closure_f1": 0.9},
    }
    targets = {"wer": ("<=", 0.10), "lip_closure_f1": (">=", 0.95)}
    per_clip = {"wer": {"teacher": [0.0, 0.1], "joint": [0.1, 0.3], "cascade": [0.05, 0.11]}}
    curves = {"loss": {"train": [1.0, 0.5, 0.3], "val": [1.1, 0.7, 0.5]}}
    out = tmp_path / "eval"
    write_report(results, targets, out, details={"clips": 2, "fps": np.float32(25)}, curves=curves,
                 per_clip=per_clip)  # fmt: skip

    data = json.loads((out / "report.json").read_text())
    assert data["results"]["joint"]["beat_align_head"] is None  # NaN is not valid JSON
    assert data["pass"] == {
        "teacher": {"wer": True, "lip_closure_f1": True},
        "joint": {"wer": False, "lip_closure_f1": True},
        "cascade": {"wer": True, "lip_closure_f1": False},
    }
    assert data["details"] == {"clips": 2, "fps": 25.0}

    rows = {line.split("|")[1].strip(): line for line in (out / "report.md").read_text().splitlines()
            if line.startswith("| ")}  # fmt: skip
    assert rows["metric"].split("|")[2:5] == [" target ", " teacher ", " joint "]
    wer = [cell.strip() for cell in rows["wer"].split("|")[2:6]]
    assert wer == ["<= 0.1", "0.05 ✅", "0.2 ❌", "0.08 ✅"]
    f1 = [cell.strip() for cell in rows["lip_closure_f1"].split("|")[2:6]]
    assert f1 == [">= 0.95", "1 ✅", "0.97 ✅", "0.9 ❌"]
    head = [cell.strip() for cell in rows["beat_align_head"].split("|")[2:6]]
    assert head == ["", "0.3", "n/a", "—"]

    for name in ("metrics.png", "curves.png", "per_clip.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_report_rejects_an_unknown_target_operator(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="operator"):
        write_report({"a": {"wer": 0.1}}, {"wer": ("<", 0.1)}, tmp_path)
