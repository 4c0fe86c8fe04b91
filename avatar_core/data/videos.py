"""Real recordings -> training samples: talking-head videos of one person, with their audio.

``dyad train data --from-videos DIR --out OUT`` writes the same samples as the teacher
(:mod:`avatar_core.data.samples`), one per utterance, so a user with consenting recordings can train the
joint model on real behaviour. Per video file (``.mp4 .mov .mkv .webm``):

1. **Media.** PyAV decodes the audio (24 kHz mono, placed on the video's clock by the streams' start
   times) and the frames. A file without an audio stream, with silent audio or without a face is
   skipped and reported; a folder where no file is usable is an error.
2. **Face.** dlib's 68 landmarks per frame -> the 22 motion fields (:mod:`avatar_core.data.landmarks`:
   head pose by PnP against a generic 3D face, expressions on the frontalised landmarks, each against
   the person's neutral face over the whole video), interpolated from
   the video frames' own timestamps (variable frame rate is common in phone recordings) to the 40 fps
   model frames and smoothed lightly (sharper for blinks and lips than for the head).
3. **Transcript.** Whisper tiny.en (faster-whisper, int8, the bundled model) with word timestamps; its
   own low-confidence segments are dropped, as in :mod:`agent.stt`.
4. **Utterances.** Words are grouped into utterances of 1-15 s: a new one starts at a sentence end
   followed by a short pause, or at any pause of ``PAUSE_S``, once the current one is at least
   ``MIN_UTTERANCE_S`` long; before ``MAX_UTTERANCE_S`` is reached one is cut at its longest pause.
   Neighbours are separated at the quietest 10 ms in the pause between them; up to ``MARGIN_S`` of
   silence is kept around the speech. An utterance where the face was lost for more than
   ``MAX_FACE_GAP_S`` is skipped.
5. **Speech features.** WORLD features (:func:`avatar_core.speech.features.analyze`) of the utterance.
6. **Phoneme timing.** The transcript is spoken by Kokoro-82M, whose duration predictor gives each token's
   exact frames (as for the teacher). Kokoro's frames are aligned to the recording's by dynamic time
   warping on the spectral part of the WORLD features (columns 2:42, mean and variance normalised per
   utterance and per side, so the two voices' timbres matter less than what is said), with the
   symmetric step pattern (a diagonal step counts its cell twice, so neither side is favoured) and a
   fixed price on every horizontal or vertical step (``STEP_PENALTY``), which keeps the path from
   drifting along silences and held vowels. A token's boundary is the first recorded frame that the
   warping path pairs with the token's first Kokoro frame; durations are the differences of consecutive
   boundaries, so they are whole model frames, never negative, and sum exactly to the utterance's frames.
   Kokoro's leading and trailing pad tokens pair with (and absorb) the recording's silence before and
   after the speech.
   Forced alignment with an acoustic model would be more exact but needs a model we do not ship;
   Kokoro's own timing turns "what phonemes, in what order, how long relative to each other" into a
   known template, and DTW only has to stretch it. The reference voice follows the speaker's pitch
   (``jm_kumo`` below ``MALE_F0_HZ`` median F0, else ``jf_alpha``).

The sample's ``voice`` is that reference voice, since the trainer only knows Kokoro voices (mixed with
teacher data of the same voice, the two speakers share one speaker embedding). Its ``source`` is
``video:<file name>``, its role ``speak``, and its partner vectors are zero (nobody listens).

Resumable: an utterance already in ``OUT`` is not written again, and a finished video is recorded in
``OUT/.videos/``, with its landmarks, transcript and utterances (name, start in seconds, frames, text),
so an interrupted video is not analysed twice.
With ``workers > 1`` videos are converted in parallel processes.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import math
import os
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import librosa
import numpy as np
import numpy.typing as npt

from avatar_core import motion as mo
from avatar_core.data.landmarks import FaceError, FaceTrack, motion_from_track, track_faces
from avatar_core.data.samples import DatasetError, Sample, append_manifest
from avatar_core.files import replacing, write_text
from avatar_core.frames import to_int16
from avatar_core.partner import PARTNER_DIM
from avatar_core.speech import features
from avatar_core.speech.features import HOP, MODEL_FPS, SAMPLE_RATE, SPECTRAL
from avatar_core.speech.prosody import energy_10ms

if TYPE_CHECKING:
    from avatar_core.tts.kokoro import KokoroTTS

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")
STATE_DIR = ".videos"
MIN_UTTERANCE_S = 1.0
MAX_UTTERANCE_S = 15.0
PAUSE_S = 0.45  # a pause this long ends an utterance (once it is long enough)
SENTENCE_PAUSE_S = 0.12  # after a sentence end, this pause is enough
MARGIN_S = 0.3  # silence kept before and after the speech
MERGE_GAP_S = 1.5  # a too-short utterance joins the previous one if it is at most this far away
MIN_FACE_SHARE = 0.3  # a video whose frames show a face less often than this is skipped
MAX_FACE_GAP_S = 0.5  # an utterance where the face is lost for longer is skipped
NO_FACE_GIVE_UP_S = 10.0  # stop looking after this much video without any face
SILENT_PEAK = 1e-3  # audio quieter than this (-60 dBFS) has nothing to transcribe
MALE_F0_HZ = 165.0
# DTW's price of a horizontal or vertical step, in units of the normalised spectral distance (about 1
# between unrelated frames): without it, cheap runs along silence or a held vowel let the path drift by
# up to a second and snap back. Measured on 16 utterances by four other Kokoro voices at 0.85-1.15x
# speed with 0.2-0.6 s of silence in front, the /p b m/ onsets are off by a median 1 frame, 90th
# percentile 1, worst 9 (without the penalty: median 2, 90th percentile 13, worst 32).
STEP_PENALTY = 0.6
FEMALE_VOICE, MALE_VOICE = "jf_alpha", "jm_kumo"
# Smoothing (Gaussian sigma, seconds) of the motion at 40 fps: landmark jitter is about one video frame.
SMOOTH_S: dict[str, float] = {
    **dict.fromkeys(mo.MOUTH_FIELDS, 0.02),
    **dict.fromkeys(("smile_l", "smile_r", "brow_up_l", "brow_up_r", "brow_down", "squint"), 0.05),
    **dict.fromkeys(("blink_l", "blink_r"), 0.01),
    **dict.fromkeys(("gaze_x", "gaze_y"), 0.03),
    **dict.fromkeys(mo.HEAD_ROTATION, 0.04),
    **dict.fromkeys(mo.HEAD_TRANSLATION, 0.06),
}


class VideoSkipped(Exception):
    """A video (or utterance) that cannot give samples; the message says why."""


@dataclass(frozen=True)
class Word:
    """One transcribed word and its time span in seconds (on the video's clock)."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Utterance:
    """One stretch of the recording that becomes one sample."""

    start: float  # seconds, a multiple of one model frame
    frames: int  # model frames
    text: str


# -------------------------------------------------------------------------------------------------
# Media
# -------------------------------------------------------------------------------------------------


def find_videos(folder: Path) -> list[Path]:
    """The video files directly in ``folder``, sorted; a clear error when there are none."""
    if not folder.is_dir():
        raise DatasetError(
            f"{folder}: no such folder; give --from-videos a folder of talking-head videos "
            f"({' '.join(VIDEO_SUFFIXES)})"
        )
    videos = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES and p.stat().st_size
    )
    if not videos:
        raise DatasetError(
            f"{folder} holds no video files ({' '.join(VIDEO_SUFFIXES)}); put talking-head videos of one "
            "person, with their sound, in it"
        )
    return videos


def read_media_audio(path: Path) -> F32:
    """The file's audio at 24 kHz mono on the video's clock (sample 0 = the first video frame's time)."""
    import av

    from avatar_core.media import MediaError, read_audio

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoSkipped("no video stream")
            if not container.streams.audio:
                raise VideoSkipped("no audio stream (the speech is needed for the transcript)")
            audio_stream, video_stream = container.streams.audio[0], container.streams.video[0]
            offset = _start_s(audio_stream) - _start_s(video_stream)
    except av.error.FFmpegError as exc:
        raise VideoSkipped(f"cannot be read ({exc})") from None
    try:
        audio = read_audio(path, SAMPLE_RATE)
    except MediaError as exc:
        raise VideoSkipped(str(exc)) from None
    shift = round(offset * SAMPLE_RATE)
    if shift > 0:  # the sound starts after the picture
        audio = np.concatenate([np.zeros(shift, np.float32), audio])
    elif shift < 0:
        audio = audio[-shift:]
    if audio.size == 0 or float(np.abs(audio).max()) < SILENT_PEAK:
        raise VideoSkipped("the audio is silent")
    return audio


def _start_s(stream: Any) -> float:
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def read_faces(path: Path) -> FaceTrack:
    """Landmarks of the video's frames (at most 30 per second); VideoSkipped when the face is missing."""
    from avatar_core.media import MediaError, video_frames

    try:
        track = track_faces(video_frames(path), give_up_s=NO_FACE_GIVE_UP_S)
    except MediaError as exc:
        raise VideoSkipped(str(exc)) from None
    if not track.found.any():
        raise VideoSkipped(f"no face found in the first {NO_FACE_GIVE_UP_S:g} s")
    share = float(track.found.mean())
    if share < MIN_FACE_SHARE:
        raise VideoSkipped(f"a face is visible in only {share:.0%} of the frames")
    return track


# -------------------------------------------------------------------------------------------------
# Transcript and utterances
# -------------------------------------------------------------------------------------------------


def transcribe(model: Any, audio24: F32) -> list[Word]:
    """Whisper's words with their times; segments Whisper itself doubts are dropped."""
    from scipy.signal import resample_poly

    from avatar_core.speech.whisper import doubtful

    audio16 = resample_poly(audio24, 2, 3).astype(np.float32)
    segments, _info = model.transcribe(
        audio16,
        language="en",
        beam_size=5,
        temperature=0.0,
        condition_on_previous_text=False,
        word_timestamps=True,
        vad_filter=True,  # faster-whisper's bundled Silero VAD: no words invented in long silences
        vad_parameters={"min_silence_duration_ms": 500},
    )
    words: list[Word] = []
    for segment in segments:
        if doubtful(segment):
            log.info("dropped doubtful segment %r", segment.text)
            continue
        for word in segment.words or ():
            text = word.word.strip()
            if text:
                start = max(float(word.start), words[-1].end if words else 0.0)
                words.append(Word(text, start, max(start, float(word.end))))
    return words


def _ends_sentence(word: Word) -> bool:
    return word.text.rstrip("\"')”’").endswith((".", "?", "!"))


def group_words(words: Sequence[Word]) -> list[list[Word]]:
    """Words -> groups of one utterance each: cut at sentence ends or pauses once long enough, at the
    longest pause when too long; a group shorter than an utterance joins the previous one if it fits."""
    longest = MAX_UTTERANCE_S - 2 * MARGIN_S
    groups: list[list[Word]] = []
    current: list[Word] = []
    for word in words:
        if current:
            pause = word.start - current[-1].end
            boundary = pause >= PAUSE_S or (_ends_sentence(current[-1]) and pause >= SENTENCE_PAUSE_S)
            if boundary and _span(current) >= MIN_UTTERANCE_S:
                groups.append(current)
                current = []
        current.append(word)
        while len(current) > 1 and _span(current) > longest:
            gaps = [current[k + 1].start - current[k].end for k in range(len(current) - 1)]
            cut = int(np.argmax(gaps)) + 1
            groups.append(current[:cut])
            current = current[cut:]
        if _span(current) > longest:  # one "word" longer than an utterance: Whisper lost the timing
            current = []
    if current:
        groups.append(current)
    merged: list[list[Word]] = []
    for group in groups:
        short = _span(group) < MIN_UTTERANCE_S or (merged and _span(merged[-1]) < MIN_UTTERANCE_S)
        if (
            merged
            and short
            and group[0].start - merged[-1][-1].end <= MERGE_GAP_S
            and group[-1].end - merged[-1][0].start <= longest
        ):
            merged[-1] = merged[-1] + group
        else:
            merged.append(group)
    return merged


def _span(group: Sequence[Word]) -> float:
    return group[-1].end - group[0].start


def utterances(words: Sequence[Word], audio24: F32) -> list[Utterance]:
    """Utterances with up to ``MARGIN_S`` of silence around their speech, cut apart at the quietest
    moment between neighbours, 1-15 s long, on whole model frames."""
    groups = group_words(words)
    duration = audio24.size / SAMPLE_RATE
    energy = energy_10ms(audio24, SAMPLE_RATE)
    cuts = [0.0]
    for a, b in itertools.pairwise(groups):
        cuts.append(_quietest(energy, a[-1].end, b[0].start))
    cuts.append(duration)
    out: list[Utterance] = []
    step = 1.0 / MODEL_FPS
    for k, group in enumerate(groups):
        start = max(cuts[k], group[0].start - MARGIN_S)
        end = min(cuts[k + 1], group[-1].end + MARGIN_S)
        start = math.ceil(start / step - 1e-6) * step
        frames = int((end - start) / step + 1e-6)
        if not MIN_UTTERANCE_S <= frames * step <= MAX_UTTERANCE_S:
            log.info("left out %.1f s of speech (%r): utterances are 1-15 s", frames * step, _text(group))
            continue
        out.append(Utterance(round(start, 6), frames, _text(group)))
    return out


def _text(group: Sequence[Word]) -> str:
    return " ".join(w.text for w in group).strip()


def _quietest(energy: F64, start: float, end: float) -> float:
    """The time of the quietest 10 ms between ``start`` and ``end`` (their midpoint if none)."""
    lo, hi = int(start * 100), int(end * 100)
    if hi <= lo or lo >= energy.size:
        return 0.5 * (start + end)
    window = energy[lo : min(hi, energy.size)]
    return (lo + int(np.argmin(window)) + 0.5) / 100.0


# -------------------------------------------------------------------------------------------------
# Phoneme timing: Kokoro's template stretched onto the recording by DTW
# -------------------------------------------------------------------------------------------------


def _normalised(feats: F32) -> F64:
    """The spectral columns (T, 40), mean and variance normalised over the utterance."""
    spectral = feats[:, SPECTRAL].astype(np.float64)
    normalised: F64 = (spectral - spectral.mean(axis=0)) / (spectral.std(axis=0) + 1e-6)
    return normalised


def dtw_path(cost: F64, step_penalty: float = 0.0) -> tuple[I64, I64]:
    """The minimal-cost monotonic path through ``cost`` (N, M) from (0, 0) to (N-1, M-1): symmetric
    step pattern (a diagonal step counts its cell twice), plus ``step_penalty`` for every horizontal or
    vertical step; ties go to the diagonal, then to the step from the row above. Returns the row and
    column of every cell on the path (librosa's ``sequence.dtw``)."""
    _, path = librosa.sequence.dtw(
        C=cost,
        step_sizes_sigma=np.array([[1, 1], [1, 0], [0, 1]], np.uint32),  # diagonal, down, right
        weights_mul=np.array([2.0, 1.0, 1.0]),
        weights_add=np.array([0.0, step_penalty, step_penalty]),
    )
    forward = np.asarray(path[::-1], np.int64)  # (L, 2); librosa returns it end first
    return forward[:, 0], forward[:, 1]


def align_durations(template: F32, template_durations: I64, recording: F32) -> I64:
    """Token durations on the recording's frames from the template's (Kokoro's) by DTW.

    ``template`` (N, F) and ``recording`` (T, F) are WORLD features; ``template_durations`` (K,) sums to N.
    Returns (K,) whole frames, each >= 0, summing to T.
    """
    n, t = template.shape[0], recording.shape[0]
    if int(template_durations.sum()) != n:
        raise ValueError(f"template durations sum to {int(template_durations.sum())}, not {n} frames")
    a, b = _normalised(template), _normalised(recording)
    squared = (a**2).sum(axis=1)[:, None] + (b**2).sum(axis=1)[None, :] - 2.0 * a @ b.T  # (N, T)
    cost = np.sqrt(np.maximum(squared, 0.0) / a.shape[1])
    rows, cols = dtw_path(cost, STEP_PENALTY)
    first = np.full(n + 1, t, np.int64)  # first recorded frame paired with each template frame
    np.minimum.at(first, rows, cols)
    first[0], first[n] = 0, t
    first = np.maximum.accumulate(first)
    edges = np.concatenate([[0], np.cumsum(template_durations)])  # (K+1,) template frame boundaries
    durations: I64 = np.diff(first[edges]).astype(np.int64)
    return durations


# -------------------------------------------------------------------------------------------------
# Converting
# -------------------------------------------------------------------------------------------------


def video_id(path: Path) -> str:
    """A stable, file-name-safe prefix for a video's samples: its stem plus a hash of its name."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem).strip("_")[:40] or "video"
    digest = hashlib.sha1(path.name.encode("utf-8")).hexdigest()[:6]
    return f"{stem}-{digest}"


def _motion_at(track: FaceTrack, motion: F32, times: F64) -> F32:
    """(T, D) motion at ``times`` (seconds), interpolated between the analysed frames with a face."""
    found = track.found
    out = np.empty((times.size, mo.MOTION_DIM), np.float32)
    for d in range(mo.MOTION_DIM):
        out[:, d] = np.interp(times, track.times[found], motion[found, d])
    return out


def _face_gap(track: FaceTrack, start: float, end: float) -> float:
    """The longest stretch (seconds) within [start, end] without an analysed face."""
    seen = track.times[track.found]
    inside = seen[(seen >= start) & (seen <= end)]
    edges = np.concatenate([[start], inside, [end]])
    return float(np.diff(edges).max())


class VideoConverter:
    """Whisper, Kokoro and dlib in one process, one thread each (run one converter per core). The
    models load on first use, so a folder of unusable files is reported without loading them."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir

    @functools.cached_property
    def whisper(self) -> Any:
        """faster-whisper with the bundled Whisper tiny.en, int8 on the CPU."""
        from faster_whisper import WhisperModel

        from avatar_core import bundled

        try:
            folder = bundled.whisper_model_dir()
        except bundled.MissingModelError as exc:
            raise DatasetError(str(exc)) from None
        return WhisperModel(
            str(folder),
            device="cpu",
            compute_type="int8",
            cpu_threads=1,
            num_workers=1,
            local_files_only=True,
        )

    @functools.cached_property
    def tts(self) -> KokoroTTS:
        """Kokoro-82M with exact phone timing."""
        from avatar_core.tts.kokoro import KokoroTTS

        return KokoroTTS(self.cache_dir, threads=1)

    def convert(self, path: Path, out: Path) -> list[Sample]:
        """The samples of one video not yet in ``out``, written there; VideoSkipped when it has none.

        ``OUT/.videos/<id>.utterances.json`` records every utterance found (name, start, frames, text).
        """
        state = out / STATE_DIR
        state.mkdir(parents=True, exist_ok=True)
        vid = video_id(path)
        audio = read_media_audio(path)
        track = self._faces(path, state / f"{vid}.faces.npz")
        words = self._words(audio, state / f"{vid}.words.json")
        if not words:
            raise VideoSkipped("Whisper heard no English speech")
        spans = utterances(words, audio)
        if not spans:
            raise VideoSkipped(f"no utterance of {MIN_UTTERANCE_S:g}-{MAX_UTTERANCE_S:g} s")
        record = [{"name": f"{vid}-{k:04d}", **asdict(span)} for k, span in enumerate(spans)]
        _write_json(state / f"{vid}.utterances.json", record)
        motion, _ = motion_from_track(track)  # (F, D) at the analysed frames
        voice = _reference_voice(audio)
        written: list[Sample] = []
        for k, span in enumerate(spans):
            name = f"{vid}-{k:04d}"
            if (out / f"{name}.npz").exists():
                continue
            end = span.start + span.frames / MODEL_FPS
            gap = _face_gap(track, span.start, min(end, float(track.times[-1])))
            if gap > MAX_FACE_GAP_S or end > track.times[-1] + MAX_FACE_GAP_S:
                log.warning("%s: utterance %d (%r) left out: the face is not seen for %.1f s",
                            path.name, k, span.text, max(gap, end - track.times[-1]))  # fmt: skip
                continue
            try:
                sample = self._sample(name, path, span, audio, track, motion, voice)
            except ValueError as exc:
                log.warning("%s: utterance %d (%r) left out: %s", path.name, k, span.text, exc)
                continue
            sample.save(out)
            written.append(sample)
        return written

    def _faces(self, path: Path, cache: Path) -> FaceTrack:
        if cache.exists():
            with np.load(cache) as data:
                size = data["size"]
                return FaceTrack(data["times"], data["points"], data["iris"], int(size[0]), int(size[1]))
        track = read_faces(path)
        with replacing(cache, ".npz") as tmp:
            np.savez(tmp, times=track.times, points=track.points, iris=track.iris,
                     size=np.array([track.width, track.height]))  # fmt: skip
        return track

    def _words(self, audio: F32, cache: Path) -> list[Word]:
        if cache.exists():
            return [Word(**w) for w in json.loads(cache.read_text(encoding="utf-8"))]
        words = transcribe(self.whisper, audio)
        _write_json(cache, [asdict(w) for w in words])
        return words

    def _sample(
        self,
        name: str,
        path: Path,
        span: Utterance,
        audio: F32,
        track: FaceTrack,
        motion: F32,
        voice: str,
    ) -> Sample:
        from avatar_core.text.frontend import encode

        first = round(span.start * SAMPLE_RATE)
        clip = np.zeros(span.frames * HOP, np.float32)
        piece = audio[first : first + clip.size]
        clip[: piece.size] = piece
        speech = features.analyze(clip)  # (T, F)
        timed = self.tts.synthesize_timed(span.text, voice)
        if timed.audio.size < HOP:
            raise ValueError("Kokoro has nothing to say for this text")
        template_frames = timed.audio.size // HOP
        template = features.analyze(timed.audio[: template_frames * HOP])  # (N, F)
        tokens = np.array([0, *encode(timed.ipa), 0], np.int64)  # Kokoro pads both ends
        kokoro = np.array([round((p.end - p.start) * MODEL_FPS) for p in timed.phones], np.int64)
        kokoro[-1] += template_frames - int(kokoro.sum())  # exact already; guards rounding
        durations = align_durations(template, kokoro, speech)
        times = span.start + np.arange(span.frames) / MODEL_FPS  # frame k shows time k / fps
        moving = mo.smooth(_motion_at(track, motion, times), MODEL_FPS, SMOOTH_S)
        return Sample(
            name, span.text, voice, "speak", f"video:{path.name}", tokens, durations, speech,
            mo.clip(moving), np.zeros((span.frames, PARTNER_DIM), np.float32), to_int16(clip),
        )  # fmt: skip


def _write_json(path: Path, data: object) -> None:
    write_text(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")


def _reference_voice(audio: F32) -> str:
    """Kokoro's voice nearest the speaker's pitch: a low median F0 takes the male voice."""
    from avatar_core.speech.prosody import prosody_from_audio

    f0 = prosody_from_audio(audio, SAMPLE_RATE, 100.0).f0_hz
    voiced = f0[f0 > 0]
    if voiced.size and float(np.median(voiced)) < MALE_F0_HZ:
        return MALE_VOICE
    return FEMALE_VOICE


# -------------------------------------------------------------------------------------------------
# The folder
# -------------------------------------------------------------------------------------------------

_converter: VideoConverter | None = None


def _init(cache_dir: Path) -> None:
    global _converter
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _converter = VideoConverter(cache_dir)


def _run(path: Path, out: Path) -> tuple[list[dict[str, object]], str | None]:
    """Convert one video in this process: (metas of the new samples, why it was skipped or None)."""
    import av

    assert _converter is not None
    try:
        samples = _converter.convert(path, out)
    except (VideoSkipped, FaceError) as exc:
        return [], str(exc)
    except av.error.FFmpegError as exc:
        return [], f"cannot be decoded ({exc})"
    return [s.meta() for s in samples], None


def _done_file(out: Path, path: Path) -> Path:
    return out / STATE_DIR / f"{video_id(path)}.done.json"


def _is_done(out: Path, path: Path) -> bool:
    done = _done_file(out, path)
    if not done.exists():
        return False
    try:
        record = json.loads(done.read_text(encoding="utf-8"))
    except ValueError:
        return False
    return bool(record.get("size") == path.stat().st_size)


def _mark_done(out: Path, path: Path, skipped: str | None) -> None:
    record = {"file": path.name, "size": path.stat().st_size, "skipped": skipped}
    _done_file(out, path).write_text(json.dumps(record) + "\n", encoding="utf-8")


def convert_folder(folder: Path, out: Path, cache_dir: Path, workers: int = 1) -> int:
    """Convert every video in ``folder`` into samples in ``out``; returns how many samples of these
    videos ``out`` holds (written now or by an earlier run).

    Videos without sound or without a face are skipped with a warning; when no video gives a sample, a
    :class:`DatasetError` lists why for each one.
    """
    if workers < 1:
        raise DatasetError(f"--workers {workers}: use 1 or more")
    videos = find_videos(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / STATE_DIR).mkdir(exist_ok=True)
    todo = [v for v in videos if not _is_done(out, v)]
    pool = None
    if todo and workers > 1 and len(todo) > 1:
        ctx = get_context("spawn")
        pool = ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx, initializer=_init,
                                   initargs=(cache_dir,))  # fmt: skip
    elif todo:
        _init(cache_dir)
    try:
        results = (
            pool.map(_run, todo, [out] * len(todo)) if pool is not None else (_run(v, out) for v in todo)
        )
        for path, (metas, reason) in zip(todo, results, strict=True):
            for meta in metas:
                append_manifest(out, meta)
            if reason is not None:
                log.warning("skipped %s: %s", path.name, reason)
            else:
                log.info("%s: %d new samples", path.name, len(metas))
            _mark_done(out, path, reason)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    total = sum(len(list(out.glob(f"{video_id(v)}-*.npz"))) for v in videos)
    if total == 0:
        reasons = [json.loads(_done_file(out, v).read_text(encoding="utf-8")).get("skipped") for v in videos]
        listed = "; ".join(
            f"{v.name}: {why or 'no usable utterance'}" for v, why in zip(videos, reasons, strict=True)
        )
        raise DatasetError(
            f"no usable video in {folder} ({listed}); use videos of one person talking to the camera"
        )
    return total
