"""Real recordings -> samples, on a video the test renders itself.

Kokoro speaks a sentence with exact phone timing, the procedural teacher moves a face to it (plus known
blinks and head turns), the portrait renderer draws a real photo (scikit-image's public-domain
``astronaut``) at 25 fps, and PyAV writes H.264 + AAC. ``convert_folder`` must get back the words, the
motion and the phone timing.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from skimage import data as skimage_data

from avatar_core import motion as mo
from avatar_core.config import AppSettings, BehaviourConfig
from avatar_core.data.landmarks import FaceTrack, motion_from_track
from avatar_core.data.samples import DatasetError, Sample, load_sample, sample_paths
from avatar_core.data.videos import (
    STATE_DIR,
    Word,
    align_durations,
    convert_folder,
    group_words,
    utterances,
    video_id,
)
from avatar_core.media import write_mp4
from avatar_core.render.portrait import PortraitRenderer
from avatar_core.speech.features import FEATURE_DIM, MODEL_FPS
from avatar_core.teacher.speaking import Phone, speak
from avatar_core.teacher.visemes import BILABIALS

F32 = npt.NDArray[np.float32]
FPS = 25.0
SIZE = 256
TEXT = "My mother baked a big pie for my birthday."
VOICE, SPEED = "jf_nezumi", 0.9  # not the converter's reference voice, and slower
LEAD_S, TAIL_S = 0.4, 0.5
BLINKS_S = (0.3, 1.45, 2.9)


def words_of(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def pearson(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    return float(np.corrcoef(np.asarray(a, np.float64), np.asarray(b, np.float64))[0, 1])


def tone(seconds: float) -> npt.NDArray[np.int16]:
    t = np.arange(int(seconds * 24_000)) / 24_000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)


@dataclass(frozen=True)
class Recording:
    folder: Path
    phones: list[Phone]  # on the video's clock
    motion: F32  # (frames, D) what was rendered, at FPS


@pytest.fixture(scope="module")
def renderer() -> PortraitRenderer:
    photo = np.ascontiguousarray(skimage_data.astronaut(), np.uint8)  # type: ignore[no-untyped-call]
    return PortraitRenderer(photo, SIZE, SIZE)


@pytest.fixture(scope="module")
def recording(renderer: PortraitRenderer, tmp_path_factory: pytest.TempPathFactory) -> Recording:
    from avatar_core.speech.prosody import prosody_from_audio
    from avatar_core.tts.kokoro import KokoroTTS

    timed = KokoroTTS(AppSettings().cache_dir).synthesize_timed(TEXT, VOICE, SPEED)
    audio = np.concatenate(
        [np.zeros(int(LEAD_S * 24_000), np.float32), timed.audio, np.zeros(int(TAIL_S * 24_000), np.float32)]
    )
    phones = [Phone(p.symbol, p.start + LEAD_S, p.end + LEAD_S) for p in timed.phones]
    frames = int(audio.size / 24_000 * FPS)
    track = speak(
        phones, prosody_from_audio(audio, 24_000, FPS), FPS, BehaviourConfig(), seed=3, frames=frames
    )
    t = np.arange(frames) / FPS
    track[:, mo.INDEX["head_yaw"]] += 0.25 * np.sin(2 * np.pi * t / 2.4)
    track[:, mo.INDEX["head_pitch"]] += 0.1 * np.sin(2 * np.pi * t / 1.7)
    blink = np.zeros(frames, np.float32)
    for centre in BLINKS_S:
        u = (t - centre) / 0.12
        blink = np.maximum(blink, np.where(np.abs(u) < 1, np.cos(0.5 * np.pi * u), 0.0).astype(np.float32))
    track[:, mo.INDEX["blink_l"]] = track[:, mo.INDEX["blink_r"]] = blink
    track = mo.clip(track)

    folder = tmp_path_factory.mktemp("videos")
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    write_mp4(folder / "talk.mp4", (renderer.render(m) for m in track), FPS, pcm)
    # A file without a face next to it must be skipped, not stop the conversion.
    grey = np.full((64, 96, 3), 128, np.uint8)
    write_mp4(folder / "wall.mp4", [grey] * 25, FPS, tone(1.0))
    (folder / "notes.txt").write_text("not a video")
    return Recording(folder, phones, track)


@pytest.fixture(scope="module")
def converted(recording: Recording, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("dataset")
    return out, convert_folder(recording.folder, out, AppSettings().cache_dir)


@pytest.fixture(scope="module")
def sample(converted: tuple[Path, int]) -> Sample:
    out, _ = converted
    return load_sample(sample_paths(out)[0])


def utterance_start(out: Path, sample: Sample) -> float:
    record = json.loads((out / STATE_DIR / f"{video_id(Path('talk.mp4'))}.utterances.json").read_text())
    return float(next(u["start"] for u in record if u["name"] == sample.name))


# ---------------------------------------------------------------------------------------------------
# The folder
# ---------------------------------------------------------------------------------------------------


def test_writes_one_checked_speaking_sample(converted: tuple[Path, int], sample: Sample) -> None:
    out, count = converted
    assert count == 1 and len(sample_paths(out)) == 1
    sample.check()
    assert (sample.role, sample.source) == ("speak", "video:talk.mp4")
    assert sample.speech.shape == (sample.frames, FEATURE_DIM)
    assert not sample.partner.any()  # nobody listens
    assert sample.tokens[0] == sample.tokens[-1] == 0  # Kokoro's pads
    assert (sample.durations >= 0).all() and int(sample.durations.sum()) == sample.frames
    mo.check(sample.motion)
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [m["name"] for m in manifest] == [sample.name]


def test_the_faceless_file_is_skipped_with_its_reason(converted: tuple[Path, int]) -> None:
    out, _ = converted
    record = json.loads((out / STATE_DIR / f"{video_id(Path('wall.mp4'))}.done.json").read_text())
    assert "no face" in record["skipped"]


def test_transcript_is_the_sentence(sample: Sample) -> None:
    assert words_of(sample.text) == words_of(TEXT)


def test_motion_follows_the_rendered_face(
    recording: Recording, converted: tuple[Path, int], sample: Sample
) -> None:
    out, _ = converted
    start = utterance_start(out, sample)
    times = start + np.arange(sample.frames) / MODEL_FPS
    video_t = np.arange(len(recording.motion)) / FPS
    columns = [np.interp(times, video_t, recording.motion[:, d]) for d in range(mo.MOTION_DIM)]
    truth = np.stack(columns, axis=1).astype(np.float32)
    for name, least in (("jaw_open", 0.7), ("blink_l", 0.7), ("blink_r", 0.7), ("head_yaw", 0.8)):
        r = pearson(mo.get(truth, name), mo.get(sample.motion, name))
        assert r > least, (name, r)
    # Every rendered blink inside the utterance is seen as a closing eye.
    for centre in BLINKS_S:
        if times[0] <= centre <= times[-1]:
            k = round((centre - start) * MODEL_FPS)
            assert mo.get(sample.motion, "blink_l")[max(0, k - 2) : k + 3].max() > 0.5, centre


def test_bilabials_are_placed_near_their_true_times(
    recording: Recording, converted: tuple[Path, int], sample: Sample
) -> None:
    from avatar_core.text.frontend import VOCAB

    out, _ = converted
    start = utterance_start(out, sample)
    bounds = np.concatenate([[0], np.cumsum(sample.durations)])
    got = [int(bounds[k]) for k, t in enumerate(sample.tokens) if VOCAB[t] in BILABIALS]
    true = [(p.start - start) * MODEL_FPS for p in recording.phones if p.symbol in BILABIALS]
    assert len(got) == len(true) >= 6
    errors = np.abs(np.array(got) - np.array(true))
    assert np.median(errors) <= 2.0, errors
    assert errors.max() <= 6.0, errors


def test_a_second_run_resumes_without_writing(recording: Recording, converted: tuple[Path, int]) -> None:
    out, count = converted
    path = sample_paths(out)[0]
    stamp = path.stat().st_mtime_ns
    assert convert_folder(recording.folder, out, AppSettings().cache_dir) == count
    assert path.stat().st_mtime_ns == stamp
    assert len((out / "manifest.jsonl").read_text().splitlines()) == count


def test_a_folder_without_videos_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("no videos here")
    with pytest.raises(DatasetError, match=r"no video files \(\.mp4"):
        convert_folder(tmp_path, tmp_path / "out", AppSettings().cache_dir)
    with pytest.raises(DatasetError, match="no such folder"):
        convert_folder(tmp_path / "missing", tmp_path / "out", AppSettings().cache_dir)


def test_only_unusable_videos_is_a_clear_error(tmp_path: Path) -> None:
    grey = np.full((64, 96, 3), 128, np.uint8)
    write_mp4(tmp_path / "in" / "wall.mp4", [grey] * 25, FPS, tone(1.0))
    write_mp4(tmp_path / "in" / "mute.mov", [grey] * 25, FPS, None)
    with pytest.raises(DatasetError) as error:
        convert_folder(tmp_path / "in", tmp_path / "out", AppSettings().cache_dir)
    message = str(error.value)
    assert "no usable video" in message
    assert "wall.mp4: no face found" in message and "mute.mov: no audio stream" in message


# ---------------------------------------------------------------------------------------------------
# The parts
# ---------------------------------------------------------------------------------------------------


def test_landmarks_to_motion_inverts_the_rig(renderer: PortraitRenderer) -> None:
    """The portrait rig's own landmarks (no detector noise) for bursts of single fields come back as
    those fields, each without waking the others."""
    frames = int(9 * FPS)
    t = np.arange(frames) / FPS
    track = np.zeros((frames, mo.MOTION_DIM), np.float32)
    bursts = {"jaw_open": 0.5, "smile_l": 1.5, "brow_up_r": 2.5, "blink_l": 3.5, "mouth_round": 4.5}
    bursts |= {"head_roll": 5.5, "lower_lip_down": 6.5, "brow_down": 7.5}
    for name, begin in bursts.items():
        u = t - begin
        peak = 0.15 if name == "head_roll" else 0.8
        track[:, mo.INDEX[name]] = peak * np.where((u >= 0) & (u < 0.8), np.sin(np.pi * u / 0.8) ** 2, 0.0)
    points = np.array([renderer.landmarks(m) for m in track], np.float64)
    face = FaceTrack(t, points, np.full((frames, 2), np.nan), SIZE, SIZE)
    got, found = motion_from_track(face)
    assert found.all() and got.shape == track.shape
    for name, begin in bursts.items():
        assert pearson(mo.get(track, name), mo.get(got, name)) > 0.9, name
        during = (t >= begin) & (t < begin + 0.8)
        assert np.abs(mo.get(got, name)[during]).max() > 0.3 * np.abs(mo.get(track, name)).max(), name
    jaw_only = (t >= 0.5) & (t < 1.3)
    for other in ("smile_l", "smile_r", "brow_up_l", "blink_l", "mouth_round"):
        assert np.abs(mo.get(got, other)[jaw_only]).max() < 0.2, other


def test_dtw_recovers_stretched_durations() -> None:
    rng = np.random.default_rng(0)
    tokens = 12
    shapes = rng.normal(0, 1, (tokens, FEATURE_DIM)).astype(np.float32)
    template_durations = rng.integers(2, 6, tokens).astype(np.int64)
    template_durations[[0, 5]] = (4, 0)  # a zero-length token is allowed and stays >= 0
    true_durations = rng.integers(2, 10, tokens).astype(np.int64)
    true_durations[5] = 0
    template = np.repeat(shapes, template_durations, axis=0)
    exact = np.repeat(shapes, true_durations, axis=0)
    recording = (exact + rng.normal(0, 0.1, exact.shape)).astype(np.float32)
    got = align_durations(template, template_durations, recording)
    assert int(got.sum()) == len(recording) and (got >= 0).all()
    assert np.abs(np.cumsum(got) - np.cumsum(true_durations)).max() <= 1
    with pytest.raises(ValueError, match="sum to"):
        align_durations(template, template_durations + 1, recording)


def test_words_are_grouped_into_utterances_of_one_to_fifteen_seconds() -> None:
    # A sentence, a 1 s pause, a 20 s monologue with a 0.3 s breath at 9 s, a lone word far away.
    words = [Word("Hello", 0.5, 0.9), Word("there,", 1.0, 1.3), Word("friend.", 1.4, 1.9)]
    t = 2.9
    while t < 23.0:
        words.append(Word("word", t, t + 0.25))
        t += 0.55 if abs(t - 9.0) < 0.2 else 0.3
    words.append(Word("Oh.", 30.0, 30.2))
    groups = group_words(words)
    assert [w.text for w in groups[0]] == ["Hello", "there,", "friend."]
    assert all(g[-1].end - g[0].start <= 15.0 - 0.6 for g in groups)
    audio = np.zeros(32 * 24_000, np.float32)
    for word in words:
        audio[int(word.start * 24_000) : int(word.end * 24_000)] = 0.1
    spans = utterances(words, audio)
    assert all(1.0 <= s.frames / MODEL_FPS <= 15.0 for s in spans)
    assert all(a.start + a.frames / MODEL_FPS <= b.start + 1e-6 for a, b in itertools.pairwise(spans))
    assert all(abs(s.start * MODEL_FPS - round(s.start * MODEL_FPS)) < 1e-6 for s in spans)
    assert spans[0].text == "Hello there, friend." and abs(spans[0].start - 0.2) < 0.03
    assert not any("Oh." in s.text for s in spans)  # 0.8 s with its margins: too short
