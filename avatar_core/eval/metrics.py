"""Evaluation metrics for generated speech and face motion, on numpy arrays.

Every metric here takes arrays and returns numbers; producing the inputs (running Whisper, the model,
the teacher) is the caller's job. Each function's docstring states the exact definition and where it
comes from, so figures in the model card can be checked by hand. The numerical building blocks come from
libraries: word alignment from jiwer; the mel spectrogram, onset strength, peak picking and DTW from
librosa.

- Speech intelligibility: ``word_error_rate`` (corpus-level WER on normalised text).
- Lip sync: ``lip_closure_f1`` (event-level F1 of closures vs /p b m/ intervals, as reported by AV-Flow).
- Rhythm: ``onset_strength`` + ``peaks`` (speech beats) and ``beat_align`` (Bailando's beat-align score).
- Realism and variety: ``frechet_distance`` on ``expression_vectors`` and ``diversity``.
- Speech quality vs a reference: ``mel_cepstral_distortion`` with DTW alignment.

Letters in shape comments: T frames (motion rate), D = MOTION_DIM, K feature dims, S audio samples,
N/M samples of a distribution, B mel bands.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import jiwer
import librosa
import numpy as np
import numpy.typing as npt
from scipy.spatial.distance import cdist

from avatar_core.motion import HEAD_ROTATION, HEAD_TRANSLATION, HIGH, INDEX, LOW, MOTION_DIM, MOUTH_FIELDS
from avatar_core.teacher.speaking import Phone
from avatar_core.teacher.visemes import LENGTH, STRESS, viseme_class

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ArrayLike = npt.NDArray[np.floating] | Sequence[float]

# Field groups. Head: all six pose channels (rotation in radians, translation in face heights).
HEAD_FIELDS: tuple[str, ...] = HEAD_ROTATION + HEAD_TRANSLATION
# Face (for beat-align): the upper-face and smile channels that carry prosodic emphasis. Mouth
# articulation is excluded because it moves with every phoneme (its velocity minima would track syllables
# whatever the model does), blinks because they are near-binary events whose velocity swamps the slow
# expression channels, and gaze because it is eye movement, not facial expression.
FACE_FIELDS: tuple[str, ...] = ("smile_l", "smile_r", "brow_up_l", "brow_up_r", "brow_down", "squint")
# Expression vectors (for the Fréchet distance): every non-rigid face channel except gaze, i.e. the
# counterpart of a 3DMM expression code (AV-Flow uses FLAME expression coefficients, which include the
# mouth and eyelids).
EXPRESSION_FIELDS: tuple[str, ...] = (
    *MOUTH_FIELDS,
    "smile_l",
    "smile_r",
    "brow_up_l",
    "brow_up_r",
    "brow_down",
    "blink_l",
    "blink_r",
    "squint",
)


def _columns(fields: Sequence[str]) -> list[int]:
    unknown = [f for f in fields if f not in INDEX]
    if unknown:
        raise ValueError(f"unknown motion field(s) {unknown}; use names from avatar_core.motion.FIELDS")
    if not fields:
        raise ValueError("select at least one motion field")
    return [INDEX[f] for f in fields]


def _track(motion: npt.NDArray[np.floating], name: str = "motion") -> FloatArray:
    array = np.asarray(motion, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != MOTION_DIM:
        raise ValueError(f"{name} must be a (T, {MOTION_DIM}) motion track, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


# --------------------------------------------------------------------------------------------------
# Word error rate
# --------------------------------------------------------------------------------------------------

_APOSTROPHES = re.compile(r"['’‘`´]")


def normalize_text(s: str) -> str:
    """Text for WER scoring: NFKC, lowercase, apostrophes removed ("don't" -> "dont"), every other
    punctuation or symbol character replaced by a space, whitespace collapsed.

    Numbers are left as they are ("3.5" becomes "3 5"): spell them out on both sides before scoring,
    because Whisper writes digits where the reference may have words.
    """
    text = _APOSTROPHES.sub("", unicodedata.normalize("NFKC", s).lower())
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    return " ".join(text.split())


@dataclass(frozen=True)
class WordErrors:
    """Minimum word edit operations turning a reference into a hypothesis."""

    substitutions: int
    deletions: int
    insertions: int
    reference_words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions


def word_errors(reference: str, hypothesis: str) -> WordErrors:
    """Levenshtein alignment of the normalised words (unit costs, jiwer's alignment), with the S/D/I
    counts of one minimum-cost alignment (the total is unique; the split between kinds may have ties)."""
    out = jiwer.process_words(normalize_text(reference), normalize_text(hypothesis))
    return WordErrors(out.substitutions, out.deletions, out.insertions, len(out.references[0]))


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus-level WER = sum of word edit distances / sum of reference words, over all utterance pairs
    (the standard NIST/jiwer definition; not a mean of per-utterance rates). Both sides pass through
    ``normalize_text``. Can exceed 1 when the hypotheses insert many words."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses; pair them 1:1")
    refs = [normalize_text(r) for r in references]
    if not any(refs):
        raise ValueError("the references contain no words, so WER is undefined")
    out = jiwer.process_words(refs, [normalize_text(h) for h in hypotheses])
    words = sum(len(words) for words in out.references)
    return (out.substitutions + out.deletions + out.insertions) / words


# --------------------------------------------------------------------------------------------------
# Bilabial lip closure
# --------------------------------------------------------------------------------------------------


def bilabial_intervals(phones: Sequence[Phone]) -> list[tuple[float, float]]:
    """(start, end) seconds of the /p b m/ phones (viseme class 'bilabial'), with the same timing rules
    as the procedural teacher: a stress mark's time goes to the phone after it, a length mark extends the
    phone before it, and bilabials next to each other (/mb/ in "number") form one closure."""
    out: list[tuple[float, float]] = []
    pending_start: float | None = None
    previous_bilabial = False
    for phone in phones:
        if phone.symbol in STRESS:
            pending_start = phone.start if pending_start is None else pending_start
            continue
        if phone.symbol == LENGTH:
            if previous_bilabial:
                out[-1] = (out[-1][0], phone.end)
            continue
        start = phone.start if pending_start is None else pending_start
        pending_start = None
        is_bilabial = viseme_class(phone.symbol) == "bilabial"
        if is_bilabial and previous_bilabial:
            out[-1] = (out[-1][0], phone.end)
        elif is_bilabial:
            out.append((start, phone.end))
        previous_bilabial = is_bilabial
    return out


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Maximal runs of True as inclusive (first, last) frame indices."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def lip_closure_f1(
    lips_pressed: ArrayLike,
    fps: float,
    bilabials: Sequence[tuple[float, float]],
    threshold: float = 0.5,
    tolerance_frames: int = 1,
) -> dict[str, float]:
    """Event-level bilabial lip-closure precision, recall and F1 (the lip-sync metric of AV-Flow, §4.2;
    this exact event matching is our definition, stated here).

    Frame ``k`` is the pose at time ``k / fps`` (the motion convention). A bilabial interval
    ``(start, end)`` covers the frames with ``start <= k / fps <= end``, or the frame nearest its centre if
    it is shorter than a frame (the teacher seals exactly these frames); it is widened by
    ``tolerance_frames`` on both sides. A *closure* is a maximal run of frames with
    ``lips_pressed >= threshold``.

    - recall = bilabial intervals containing at least one closed frame / bilabial intervals;
    - precision = closures overlapping at least one widened bilabial interval / closures;
    - F1 = 2 P R / (P + R), 0 when both are 0.

    Vacuous cases count as perfect: no closures gives precision 1, no bilabials gives recall 1. The
    result also carries the counts (``bilabials``, ``detected``, ``closures``, ``matched``) so that
    ``pooled_closure_f1`` can combine clips.
    """
    pressed = np.asarray(lips_pressed, dtype=np.float64)
    if pressed.ndim != 1:
        raise ValueError(f"lips_pressed must be a (T,) track, got shape {pressed.shape}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if tolerance_frames < 0:
        raise ValueError(f"tolerance_frames must be >= 0, got {tolerance_frames}")
    frames = pressed.shape[0]
    closed = pressed >= threshold  # (T,)
    cumulative = np.concatenate([[0], np.cumsum(closed)])  # closed frames before index k
    windows: list[tuple[int, int]] = []
    detected = 0
    for start, end in bilabials:
        if end < start:
            raise ValueError(f"bilabial interval ({start}, {end}) ends before it starts")
        first, last = math.ceil(start * fps - 1e-9), math.floor(end * fps + 1e-9)
        if first > last:  # shorter than a frame
            first = last = round(0.5 * (start + end) * fps)
        lo = max(0, first - tolerance_frames)
        hi = min(frames - 1, last + tolerance_frames)
        if lo > hi:  # the interval lies outside the track: a miss that no closure can match
            continue
        windows.append((lo, hi))
        if cumulative[hi + 1] - cumulative[lo] > 0:
            detected += 1
    closures = _runs(closed)
    matched = sum(1 for a, b in closures if any(a <= hi and b >= lo for lo, hi in windows))
    return _closure_scores(len(bilabials), detected, len(closures), matched)


def _closure_scores(bilabials: int, detected: int, closures: int, matched: int) -> dict[str, float]:
    recall = detected / bilabials if bilabials else 1.0
    precision = matched / closures if closures else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "bilabials": float(bilabials),
        "detected": float(detected),
        "closures": float(closures),
        "matched": float(matched),
    }


def pooled_closure_f1(per_clip: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Corpus-level closure scores: the counts of ``lip_closure_f1`` results summed over clips, then
    precision, recall and F1 from the totals (micro-averaging, so short clips do not weigh more)."""
    totals = dict.fromkeys(("bilabials", "detected", "closures", "matched"), 0)
    for clip in per_clip:
        for key in totals:
            totals[key] += round(clip[key])
    return _closure_scores(totals["bilabials"], totals["detected"], totals["closures"], totals["matched"])


# --------------------------------------------------------------------------------------------------
# Speech onsets and beat alignment
# --------------------------------------------------------------------------------------------------


def onset_strength(
    audio: ArrayLike, sample_rate: int, fps: float, frames: int | None = None, bands: int = 40
) -> FloatArray:
    """Spectral-flux onset strength of speech at the motion frame rate, shape (T,).

    librosa's ``onset.onset_strength`` (Böck & Widmer 2013 without the max filter) on a
    ``bands``-band HTK mel power spectrogram in dB (floor 1e-10, clipped 80 dB below its maximum) of a
    Hann-windowed STFT (symmetric window the power of two nearest 25 ms, hop min(10 ms, half a motion
    frame), centred frames, zero padding): per STFT frame the mean over bands of the half-wave
    rectified increase from the previous frame, 0 for the first. Motion frame ``k`` takes the maximum
    flux of the STFT frames whose centres lie within half a motion frame of ``k / fps``. ``frames``
    fixes T (to match a motion track); default ``round(S * fps / sample_rate)``.
    """
    wave = np.asarray(audio, dtype=np.float64)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"audio must be a non-empty mono (S,) array, got shape {wave.shape}")
    if sample_rate <= 0 or fps <= 0:
        raise ValueError(f"sample_rate and fps must be positive, got {sample_rate} and {fps}")
    if frames is None:
        frames = max(1, round(wave.size * fps / sample_rate))
    n_fft = 2 ** round(math.log2(0.025 * sample_rate))
    hop = max(1, min(sample_rate // 100, int(sample_rate / (2.0 * fps))))
    mel = librosa.feature.melspectrogram(
        y=wave,
        sr=sample_rate,
        n_fft=n_fft,
        hop_length=hop,
        window=np.hanning(n_fft),
        center=True,
        pad_mode="constant",
        power=2.0,
        n_mels=bands,
        fmin=30.0,
        fmax=sample_rate / 2.0,
        htk=True,
        norm=None,
        dtype=np.float64,
    )  # (B, N)
    db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)  # (B, N)
    # center=False: the frames are already centred, so librosa must not shift the envelope again.
    flux = librosa.onset.onset_strength(
        S=db, sr=sample_rate, lag=1, max_size=1, center=False, aggregate=np.mean
    )  # (N,)
    count = flux.shape[0]
    # Pool onto motion frames: STFT frame n is centred at n * hop / sample_rate seconds.
    nearest = np.rint(np.arange(count) * hop / sample_rate * fps).astype(np.int64)  # (N,)
    out = np.zeros(frames)
    inside = nearest < frames
    np.maximum.at(out, nearest[inside], flux[inside])
    return out


def peaks(x: ArrayLike, delta: float = 0.5, min_distance: int = 1) -> IntArray:
    """Indices of the peaks of ``x``: frames that are the maximum of ``x`` within ``min_distance`` frames
    on either side (the first frame of a flat top) and reach ``mean(x) + delta * std(x)``.

    librosa's ``util.peak_pick`` (Böck et al. 2012) with the average taken over the whole signal and a
    wait of ``min_distance`` frames after each peak. ``delta = 0`` gives a plain mean threshold; the
    default 0.5 keeps noise ripples out.
    """
    values = np.asarray(x, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"peaks expects a 1-D signal, got shape {values.shape}")
    if values.size == 0:
        return np.zeros(0, np.int64)
    if min_distance < 1:
        raise ValueError(f"min_distance must be >= 1 frame, got {min_distance}")
    whole = values.size  # averaging windows that always cover the whole signal: a global threshold
    found = librosa.util.peak_pick(
        values,
        pre_max=min_distance,
        post_max=min_distance + 1,
        pre_avg=whole,
        post_avg=whole,
        delta=float(delta * values.std()),  # librosa rounds it to float32
        wait=min_distance,
    )
    return np.asarray(found, np.int64)


def _gaussian_filter(x: FloatArray, sigma: float) -> FloatArray:
    """1-D Gaussian smoothing, mirror padding, kernel truncated at 4 sigma (scipy's gaussian_filter1d).

    Written out rather than calling scipy on purpose: ``kinematic_beats`` takes strict minima, and motion
    often has two-frame valleys whose smoothed values are equal in exact arithmetic, so the order in
    which the taps are summed decides whether they count. scipy sums symmetric taps pairwise, which
    moves the face beat-align of the teacher data from 0.105 to 0.073; this keeps published figures
    reproducible.
    """
    if sigma <= 0:
        return x
    radius = int(4.0 * sigma + 0.5)
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(x, radius, mode="symmetric")
    smoothed: FloatArray = np.convolve(padded, kernel, mode="valid")
    return smoothed


def kinematic_beats(
    motion: npt.NDArray[np.floating], fps: float, fields: Sequence[str], smoothing_s: float = 5.0 / 60.0
) -> IntArray:
    """Frames where the selected fields' motion is slowest: strict local minima of the speed.

    Speed at frame t = the Euclidean norm over the fields of the central-difference velocity, each field
    divided by its range (HIGH - LOW) so radians and face heights weigh alike; then Gaussian smoothing
    with sigma ``smoothing_s`` seconds (Bailando smooths with sigma 5 frames at 60 fps, our default).
    Bailando uses forward differences; central ones put the minimum on the frame itself instead of half a
    frame early. Still stretches (speed exactly flat) give no beat.
    """
    track = _track(motion)
    columns = _columns(fields)
    scaled = track[:, columns] / (HIGH[columns] - LOW[columns]).astype(np.float64)  # (T, F)
    if scaled.shape[0] < 3:
        return np.zeros(0, np.int64)
    speed = np.linalg.norm(np.gradient(scaled, axis=0), axis=1)  # (T,)
    speed = _gaussian_filter(speed, smoothing_s * fps)
    inner = (speed[1:-1] < speed[:-2]) & (speed[1:-1] < speed[2:])
    return np.flatnonzero(inner).astype(np.int64) + 1


def beat_align(
    motion: npt.NDArray[np.floating],
    fps: float,
    audio_beats: Sequence[int] | npt.NDArray[np.integer],
    fields: Sequence[str],
    sigma: float = 3.0,
) -> float:
    """Beat-align score (Bailando, Siyao et al. CVPR 2022, Eq. 8; used by AV-Flow for head and face):

        BA = 1/|B_a| * sum over audio beats b of exp(-min_{m in B_k} (b - m)^2 / (2 sigma^2))

    with B_k the ``kinematic_beats`` of ``fields`` and distances in frames. 1.0 when every audio beat has
    a kinematic beat on the same frame; 0.0 when the motion has no beats; NaN when there are no audio
    beats (undefined; average clips with ``numpy.nanmean``).
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    beats = np.asarray(audio_beats, dtype=np.float64).reshape(-1)
    if beats.size == 0:
        return float("nan")
    motion_beats = kinematic_beats(motion, fps, fields).astype(np.float64)
    if motion_beats.size == 0:
        return 0.0
    distance = np.abs(beats[:, None] - motion_beats[None, :]).min(axis=1)  # (A,)
    return float(np.mean(np.exp(-(distance**2) / (2.0 * sigma**2))))


def beat_align_scores(
    motion: npt.NDArray[np.floating], fps: float, audio: ArrayLike, sample_rate: int, sigma: float = 3.0
) -> dict[str, float]:
    """Beat-align of ``HEAD_FIELDS`` and ``FACE_FIELDS`` against the speech's onset peaks.

    Audio beats are ``peaks(onset_strength(audio, sample_rate, fps, frames=T))`` with peaks at least
    0.1 s apart (speech has at most about 8 syllables a second).
    """
    track = _track(motion)
    onsets = onset_strength(audio, sample_rate, fps, frames=track.shape[0])
    beats = peaks(onsets, min_distance=max(1, round(0.1 * fps)))
    return {
        "head": beat_align(track, fps, beats, HEAD_FIELDS, sigma),
        "face": beat_align(track, fps, beats, FACE_FIELDS, sigma),
    }


# --------------------------------------------------------------------------------------------------
# Distribution metrics: Fréchet distance and diversity
# --------------------------------------------------------------------------------------------------


def expression_vectors(motion: npt.NDArray[np.floating]) -> FloatArray:
    """The ``EXPRESSION_FIELDS`` of a motion track, shape (T, 14): one expression vector per frame."""
    return _track(motion)[:, _columns(EXPRESSION_FIELDS)]


def _psd_sqrt(matrix: FloatArray) -> FloatArray:
    values, vectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
    root: FloatArray = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    return root


def frechet_distance(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> float:
    """Fréchet distance between Gaussians fitted to two sample sets (the FID formula, Heusel et al. 2017):

        ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr( (S_a^1/2 S_b S_a^1/2)^1/2 )

    with unbiased sample covariances. ``tr sqrt(S_a S_b)`` is computed in the equivalent symmetric form
    above with eigendecompositions (negative round-off eigenvalues clipped), which stays real and stable
    for singular covariances where ``scipy.linalg.sqrtm`` needs an epsilon. Rows are samples: (N, K) and
    (M, K), N, M >= 2.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected (N, K) and (M, K) sample sets with the same K, got {x.shape}, {y.shape}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"need at least 2 samples per set for a covariance, got {x.shape[0]}, {y.shape[0]}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("sample sets contain NaN or infinite values")
    mu_x, mu_y = x.mean(axis=0), y.mean(axis=0)
    cov_x = np.atleast_2d(np.cov(x, rowvar=False))  # (K, K)
    cov_y = np.atleast_2d(np.cov(y, rowvar=False))  # (K, K)
    root_x = _psd_sqrt(cov_x)
    middle = root_x @ cov_y @ root_x
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (middle + middle.T)), 0.0, None)).sum()
    value = float(np.sum((mu_x - mu_y) ** 2) + np.trace(cov_x) + np.trace(cov_y) - 2.0 * cross)
    return max(0.0, value)


def diversity(tracks: Sequence[npt.NDArray[np.floating]], fields: Sequence[str] | None = None) -> float:
    """Mean pairwise Euclidean distance between per-clip feature vectors over all clip pairs i < j.

    A clip's feature vector is the per-field mean over time followed by the per-field standard deviation
    (over ``fields``, default all), in the fields' own units: the clip-statistics diversity used for
    listening-head generation (e.g. Ng et al., "Learning to Listen", CVPR 2022). 0 for identical clips.
    """
    if len(tracks) < 2:
        raise ValueError(f"diversity needs at least 2 clips, got {len(tracks)}")
    columns = _columns(fields) if fields is not None else list(range(MOTION_DIM))
    features = np.stack(
        [
            np.concatenate([t.mean(axis=0), t.std(axis=0)])
            for t in (_track(track, f"clip {i}")[:, columns] for i, track in enumerate(tracks))
        ]
    )  # (C, 2F)
    distances = np.linalg.norm(features[:, None, :] - features[None, :, :], axis=-1)  # (C, C)
    upper = np.triu_indices(len(tracks), k=1)
    return float(distances[upper].mean())


# --------------------------------------------------------------------------------------------------
# Mel-cepstral distortion
# --------------------------------------------------------------------------------------------------

_MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)
# DTW steps (rows, columns) in the order that wins ties: diagonal, from the row above, from the left.
_DTW_STEPS = np.array([[1, 1], [1, 0], [0, 1]], np.uint32)


def dtw_path(x: npt.NDArray[np.floating], y: npt.NDArray[np.floating], band: int | None = None) -> IntArray:
    """Dynamic time warping of (T1, K) and (T2, K) sequences under Euclidean frame distance, steps
    (1, 1), (1, 0), (0, 1) with unit weights (ties go to the diagonal, then to the step from the row
    above), both ends pinned; returns the path as (L, 2) index pairs. librosa's ``sequence.dtw`` solves
    it on a cost matrix that is infinite outside the band.

    ``band`` limits the search to ``|j - i * (T2 - 1) / (T1 - 1)| <= band`` (a Sakoe-Chiba band around
    the slanted diagonal, widened where needed so consecutive rows connect; the last row reaches the
    end); None searches everything when T1 * T2 <= 4e6 and otherwise uses 10% of the longer length.
    Memory is O(T1 * T2) either way.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    n, m = xs.shape[0], ys.shape[0]
    if n == 0 or m == 0:
        raise ValueError("cannot align an empty sequence")
    if band is None and n * m > 4_000_000:
        band = max(1, int(0.1 * max(n, m)))
    cost = cdist(xs, ys)  # (T1, T2)
    if band is not None:
        slope = (m - 1) / (n - 1) if n > 1 else 0.0
        radius = max(band, math.ceil(slope) if n > 1 else m)
        centre = np.arange(n) * slope  # (T1,)
        lo = np.maximum(0, np.floor(centre - radius))
        hi = np.minimum(m - 1, np.ceil(centre + radius))
        hi[-1] = m - 1
        j = np.arange(m)[None, :]
        cost[(j < lo[:, None]) | (j > hi[:, None])] = np.inf
    try:
        _, path = librosa.sequence.dtw(C=cost, step_sizes_sigma=_DTW_STEPS)
    except librosa.util.exceptions.ParameterError as error:
        raise ValueError("the DTW band is too narrow to connect the sequences; pass a wider band") from error
    pairs: IntArray = np.asarray(path[::-1], np.int64)  # librosa returns it end first
    return pairs


def mel_cepstral_distortion(
    c_ref: npt.NDArray[np.floating],
    c_gen: npt.NDArray[np.floating],
    align: Literal["dtw", "none"] = "dtw",
    skip_c0: bool = True,
    band: int | None = None,
) -> float:
    """Mel-cepstral distortion in dB (Kubichek 1993; the usual TTS form):

        MCD = mean over aligned frame pairs of (10 / ln 10) * sqrt(2 * sum_{k>=1} (c_ref[k] - c_gen[k])^2)

    Column 0 (energy) is excluded unless ``skip_c0`` is False. Pass the WORLD coded spectral envelope
    (columns 1:41 of the speech features, from ``pyworld.code_spectral_envelope``; a DCT of the log
    mel-warped power spectrum) of both signals at the same frame rate. ``align='dtw'`` pairs frames along
    ``dtw_path`` on the same coefficients; ``'none'`` pairs frame t with frame t and needs equal lengths.
    Because WORLD's coding differs in scaling from SPTK mel-cepstra, compare values between systems of
    this report, not with published numbers.
    """
    ref = np.asarray(c_ref, dtype=np.float64)
    gen = np.asarray(c_gen, dtype=np.float64)
    if ref.ndim != 2 or gen.ndim != 2 or ref.shape[1] != gen.shape[1]:
        raise ValueError(f"expected (T, K) and (T2, K) cepstra with the same K, got {ref.shape}, {gen.shape}")
    first = 1 if skip_c0 else 0
    if ref.shape[1] <= first:
        raise ValueError(f"need at least {first + 1} coefficients per frame, got {ref.shape[1]}")
    if ref.shape[0] == 0 or gen.shape[0] == 0:
        raise ValueError("cannot compare an empty cepstrum sequence")
    ref, gen = ref[:, first:], gen[:, first:]
    if align == "none":
        if ref.shape[0] != gen.shape[0]:
            raise ValueError(
                f"align='none' needs equal lengths, got {ref.shape[0]} and {gen.shape[0]} frames; "
                "use align='dtw'"
            )
        pairs_ref, pairs_gen = ref, gen
    elif align == "dtw":
        path = dtw_path(ref, gen, band)
        pairs_ref, pairs_gen = ref[path[:, 0]], gen[path[:, 1]]
    else:
        raise ValueError(f"align must be 'dtw' or 'none', got {align!r}")
    per_frame = _MCD_SCALE * np.linalg.norm(pairs_ref - pairs_gen, axis=1)  # (L,)
    return float(per_frame.mean())
