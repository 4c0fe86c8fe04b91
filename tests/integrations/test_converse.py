"""`dyad converse` end to end: a two-question recording in, one reply per question out, deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from scipy.signal import resample_poly
from typer.testing import CliRunner

from avatar_core.config import AppSettings
from avatar_core.frames import AUDIO_RATE
from avatar_core.media import write_mp4
from avatar_core.motion import frame
from avatar_core.tts.kokoro import KokoroTTS
from integrations.cli.main import app

QUESTIONS = ["What time does the library open?", "How much does printing cost?"]
STARTS = [4.0, 20.0]
SECONDS = 26.0


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A WAV with two questions separated by a long pause, and a matching user video."""
    import wave

    from skimage.data import astronaut

    from avatar_core.render.portrait import PortraitRenderer

    folder = tmp_path_factory.mktemp("user")
    tts = KokoroTTS(AppSettings().cache_dir)
    audio = np.zeros(int(SECONDS * 16_000), np.float32)
    for start, text in zip(STARTS, QUESTIONS, strict=True):
        clip = resample_poly(tts.synthesize(text, "jm_kumo"), 2, 3)
        a = int(start * 16_000)
        audio[a : a + clip.size] = clip
    wav = folder / "user.wav"
    with wave.open(str(wav), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16_000)
        handle.writeframes((audio * 32767).astype(np.int16).tobytes())
    face = PortraitRenderer(astronaut(), 240, 240)
    smiling = frame(smile_l=0.8, smile_r=0.8)
    smile = [smiling if 8 <= k / 10 <= 12 else frame() for k in range(int(SECONDS * 10))]
    video = folder / "user.mp4"
    write_mp4(video, (face.render(m) for m in smile), 10.0)
    return wav, video


def run(tmp: Path, wav: Path, video: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, Path]:  # type: ignore[type-arg]
    monkeypatch.setenv("DYAD_LLM__MAX_TOKENS", "30")
    monkeypatch.setenv("DYAD_LLM__TEMPERATURE", "0")
    monkeypatch.setenv("DYAD_APPEARANCE__VIDEO__WIDTH", "256")
    monkeypatch.setenv("DYAD_APPEARANCE__VIDEO__HEIGHT", "256")
    out, transcript = tmp / "conversation.mp4", tmp / "conversation.json"
    args = ["converse", "--user-audio", str(wav), "--user-video", str(video), "--out", str(out),
            "--transcript", str(transcript), "--seed", "3"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(transcript.read_text()), out


def test_two_questions_two_replies_deterministic(
    recording: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wav, video = recording
    first, out = run(tmp_path / "a", wav, video, monkeypatch)
    answered = [t for t in first["turns"] if "user" in t]
    assert len(answered) == 2
    assert "library" in answered[0]["user"]["text"].lower()
    assert "print" in answered[1]["user"]["text"].lower()
    for turn, start in zip(answered, STARTS, strict=True):
        assert turn["agent"]["text"] and not turn["agent"]["interrupted"]
        assert start < turn["user"]["start"] < start + 1.0
        latency = turn["latency_ms"]
        assert 100 < latency["end_of_turn"] < 1600  # Smart Turn: from min_wait_ms to max_wait_ms
        assert (
            latency["end_of_turn"]
            <= latency["transcript"]
            <= latency["first_token"]
            <= latency["first_audio"]
        )
    greeting = first["turns"][0]
    assert "user" not in greeting and greeting["agent"]["text"].startswith("Hi, I'm Ada")

    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(out)) as container:
        sound = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert frames[0].shape == (256, 256 + 256, 3)  # avatar, then the user beside it
    assert len(frames) >= SECONDS * 25
    assert len(sound) >= SECONDS * AUDIO_RATE
    user_side = np.array([f[:, 256:].mean() for f in frames])
    assert user_side.std() > 0  # the user's video is there and moving

    second, _ = run(tmp_path / "b", wav, video, monkeypatch)
    assert [t.get("agent", {}).get("text") for t in second["turns"]] == [
        t.get("agent", {}).get("text") for t in first["turns"]
    ]
    timing = [(e["type"], e["t"]) for e in first["events"] if e["type"] != "metrics"]
    assert timing == [(e["type"], e["t"]) for e in second["events"] if e["type"] != "metrics"]


def test_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["converse", "--user-audio", str(tmp_path / "nope.wav")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_file_without_audio_is_a_clear_error(recording: tuple[Path, Path], tmp_path: Path) -> None:
    _, video = recording
    args = ["converse", "--user-audio", str(video), "--out", str(tmp_path / "x.mp4")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "no audio stream" in result.output
