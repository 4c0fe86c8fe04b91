"""Listener metrics for a scene of two avatars: does the one who is not speaking behave like a listener?

Every function takes arrays and returns numbers; the scene that produces them (``dyad dialogue``) is the
caller's job. The rules measured are the teacher's listening rules (:mod:`avatar_core.teacher.listening`):

- ``backchannel``: the share of the speaker's pauses (silences longer than ``PAUSE_MIN_S`` inside its
  speech, while the partner is silent too) that the listener answers with a nod visible within
  ``ANSWER_S`` of the pause's start;
- ``mouth_rest``: the share of the frames in which an avatar does not speak where its jaw is near rest;
- ``energy_ratio``: the listener's motion energy over the speaker's, on the same frames;
- ``lip_closure_f1``: each speaker's bilabial closures against its /p b m/ phones
  (:func:`avatar_core.eval.metrics.lip_closure_f1`).

Letters in shape comments: T video frames, D = MOTION_DIM, S audio samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from avatar_core.eval.metrics import FACE_FIELDS, HEAD_FIELDS, lip_closure_f1
from avatar_core.motion import HIGH, INDEX, LOW, MOTION_DIM

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

SPEECH_RMS = 10 ** (-45 / 20)  # a video frame whose audio is louder than -45 dBFS holds speech
PAUSE_MIN_S = 0.3  # a shorter silence is part of the flow of speech, not a pause
ANSWER_S = 1.0  # a nod starting this soon after a pause begins answers it
NOD_RISE_RAD = 0.03  # a nod: head pitch rises this much above its lowest of the last NOD_WINDOW_S ...
NOD_WINDOW_S = 0.4  # ... (idle sway moves the head at most 0.015 rad, slowly)
JAW_REST = 0.1  # jaw_open at or below this is a mouth at rest
ENERGY_FIELDS: tuple[str, ...] = HEAD_FIELDS + FACE_FIELDS  # what a listener moves; not the mouth


@dataclass
class SceneTrack:
    """What one avatar of a scene did, at the scene's video frame rate.

    ``motion`` (T, D): the motion frame that drew each video frame; ``speaking`` (T,): whether the avatar
    was playing one of its lines at that frame; ``audio`` (S,): its own voice at ``sample_rate``, from
    time 0; ``bilabials``: (start, end) seconds of its /p b m/ phones on the scene clock.
    """

    name: str
    motion: FloatArray
    speaking: BoolArray
    audio: npt.NDArray[np.int16]
    sample_rate: int
    bilabials: list[tuple[float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.motion.ndim != 2 or self.motion.shape[1] != MOTION_DIM:
            raise ValueError(f"{self.name}: motion must be (T, {MOTION_DIM}), got {self.motion.shape}")
        if self.speaking.shape != (self.motion.shape[0],):
            raise ValueError(
                f"{self.name}: speaking must be ({self.motion.shape[0]},) like motion, "
                f"got {self.speaking.shape}"
            )


def speech_activity(audio: npt.NDArray[np.int16], sample_rate: int, fps: float, frames: int) -> BoolArray:
    """Whether each video frame's span ``[k / fps, (k + 1) / fps)`` of ``audio`` (S,) holds speech:
    its RMS is above ``SPEECH_RMS`` (the voices are clean synthetic speech, so energy is enough)."""
    wave = audio.astype(np.float64) / 32768.0  # (S,)
    edges = np.round(np.arange(frames + 1) * sample_rate / fps).astype(np.int64)  # (T+1,)
    power = np.concatenate([[0.0], np.cumsum(wave * wave)])  # (S+1,)
    lo, hi = np.minimum(edges[:-1], wave.size), np.minimum(edges[1:], wave.size)
    count = np.maximum(hi - lo, 1)
    rms = np.sqrt((power[hi] - power[lo]) / count)  # (T,)
    active: BoolArray = (rms > SPEECH_RMS) & (hi > lo)
    return active


def _runs(mask: BoolArray) -> list[tuple[int, int]]:
    """Maximal runs of True as half-open (first, end) frame indices."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.diff(padded)
    return [
        (int(a), int(b)) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)
    ]


def pauses(
    active: BoolArray, partner_active: BoolArray, fps: float, min_s: float = PAUSE_MIN_S
) -> list[tuple[float, float]]:
    """(start, end) seconds of the speaker's pauses: silent runs of ``active`` (T,) longer than ``min_s``
    with speech on both sides, during which ``partner_active`` (T,) is silent too (a silence in which
    the partner talks is a turn change, not a pause)."""
    out = []
    for a, b in _runs(~active):
        if a == 0 or b >= active.size or (b - a) / fps <= min_s:
            continue
        if partner_active[a:b].any():
            continue
        out.append((a / fps, b / fps))
    return out


def nod_onsets(motion: FloatArray, fps: float) -> list[float]:
    """Times (seconds) at which head nods in ``motion`` (T, D) become visible: the first frame of each
    run of frames whose head pitch is at least ``NOD_RISE_RAD`` above its lowest value of the preceding
    ``NOD_WINDOW_S`` (about 0.1 s into a teacher nod)."""
    pitch = motion[:, INDEX["head_pitch"]].astype(np.float64)  # (T,)
    window = max(1, round(NOD_WINDOW_S * fps))
    rising = np.zeros(pitch.size, bool)
    for k in range(pitch.size):
        rising[k] = pitch[k] - pitch[max(0, k - window) : k + 1].min() >= NOD_RISE_RAD
    return [a / fps for a, _ in _runs(rising)]


def backchannels(
    speaker_pauses: Sequence[tuple[float, float]], listener_nods: Sequence[float], answer_s: float = ANSWER_S
) -> int:
    """How many pauses have a listener nod becoming visible in ``[pause start, pause start + answer_s]``."""
    nods = np.asarray(listener_nods, np.float64)
    return sum(1 for start, _ in speaker_pauses if ((nods >= start) & (nods <= start + answer_s)).any())


def motion_energy(motion: FloatArray, fps: float) -> FloatArray:
    """Per-frame speed (T,) of the ``ENERGY_FIELDS``, each scaled by its range: the norm of the central
    difference per second. A listener moves its head and face, not its mouth, so the mouth is left out."""
    columns = [INDEX[f] for f in ENERGY_FIELDS]
    scaled = motion[:, columns].astype(np.float64) / (HIGH[columns] - LOW[columns])  # (T, F)
    if scaled.shape[0] < 2:
        return np.zeros(scaled.shape[0], np.float32)
    speed: FloatArray = (np.linalg.norm(np.gradient(scaled, axis=0), axis=1) * fps).astype(np.float32)  # (T,)
    return speed


def listener_report(tracks: Sequence[SceneTrack], fps: float) -> dict[str, object]:
    """The listener metrics of a two-avatar scene, pooled over both directions, with each avatar's own.

    Keys: ``backchannel`` (answered pauses / pauses), ``pauses``, ``answered``, ``mouth_rest`` (silent
    frames with the jaw at rest / silent frames), ``energy_ratio`` (the listener's mean motion energy over
    the speaker's, on the frames where exactly one of them speaks), ``lip_closure_f1`` (per avatar),
    and ``avatars`` (each one's figures as a listener).
    """
    if len(tracks) != 2:
        raise ValueError(f"a scene has two avatars, got {len(tracks)}")
    frames = min(t.motion.shape[0] for t in tracks)
    active = [speech_activity(t.audio, t.sample_rate, fps, frames) for t in tracks]
    energy = [motion_energy(t.motion[:frames], fps) for t in tracks]
    nods = [nod_onsets(t.motion[:frames], fps) for t in tracks]
    per: dict[str, dict[str, float]] = {}
    total_pauses = total_answered = 0
    rest_frames = silent_frames = 0
    listen_energy: list[float] = []
    speak_energy: list[float] = []
    closure: dict[str, float] = {}
    for i, track in enumerate(tracks):
        j = 1 - i  # the partner, who speaks while this one listens
        partner = tracks[j]
        heard = pauses(active[j], active[i], fps)
        answered = backchannels(heard, nods[i])
        silent = ~track.speaking[:frames]  # (T,)
        rest = silent & (track.motion[:frames, INDEX["jaw_open"]] <= JAW_REST)
        only_partner = partner.speaking[:frames] & silent
        total_pauses += len(heard)
        total_answered += answered
        silent_frames += int(silent.sum())
        rest_frames += int(rest.sum())
        if only_partner.any():
            listen_energy.append(float(energy[i][only_partner].mean()))
            speak_energy.append(float(energy[j][only_partner].mean()))
        lips = track.motion[:frames, INDEX["lips_pressed"]]
        closure[track.name] = lip_closure_f1(lips, fps, track.bilabials)["f1"]
        per[track.name] = {
            "pauses_heard": float(len(heard)),
            "answered": float(answered),
            "nods": float(len(nods[i])),
            "mouth_rest": float(rest.sum() / silent.sum()) if silent.any() else 1.0,
            "listening_energy": listen_energy[-1] if only_partner.any() else 0.0,
        }
    listen_mean = float(np.mean(listen_energy)) if listen_energy else 0.0
    speak_mean = float(np.mean(speak_energy)) if speak_energy else 0.0
    return {
        "backchannel": total_answered / total_pauses if total_pauses else float("nan"),
        "pauses": total_pauses,
        "answered": total_answered,
        "mouth_rest": rest_frames / silent_frames if silent_frames else 1.0,
        "energy_ratio": listen_mean / speak_mean if speak_mean > 0 else float("nan"),
        "lip_closure_f1": closure,
        "avatars": per,
    }
