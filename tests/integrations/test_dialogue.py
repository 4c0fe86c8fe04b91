"""`dyad dialogue`: two avatars in one scene, each speaking its lines and listening to the other.

One short scene (two lines, 128x128 faces, Kokoro voices with teacher faces) is made once for the module
and examined from several sides.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from agent.persona import Persona, load_persona
from avatar_core.eval.listener import nod_onsets, pauses, speech_activity
from avatar_core.motion import MOTION_DIM, NEUTRAL, frame
from avatar_core.render import make_renderer
from avatar_core.text.chunking import chunk_text
from avatar_core.voice import Utterance
from integrations.files.dialogue import (
    TAIL_S,
    DialogueError,
    DialogueResult,
    ScriptedLines,
    dialogue,
    read_script,
    speaker_names,
)
from integrations.files.render import video_audio_durations

SIZE = 128
FPS = 25.0

PERSONA = """
identity: {{display_name: {name}, livekit_identity: test-{slug}}}
appearance:
  renderer: stylized
  stylized: {{hair_style: {hair}, face_shape: {shape}}}
voice: {{mode: cascade, speaker: {speaker}}}
llm: {{base_url: embedded, system_prompt: "You are {name}.", greeting: "Hello.", fallback_line: "Sorry?"}}
behaviour: {{backchannel_rate: 1.0}}
"""

SCRIPT = """
- speaker: Robin
  text: Good morning. Welcome to the library, we open at nine. How can I help you today?
- speaker: Ada
  text: I would like a card, please.
"""


def write_persona(folder: Path, name: str, speaker: str, hair: str, shape: str) -> Path:
    path = folder / f"{name.lower()}.yaml"
    path.write_text(PERSONA.format(name=name, slug=name.lower(), speaker=speaker, hair=hair, shape=shape))
    return path


@pytest.fixture(scope="module")
def personas(tmp_path_factory: pytest.TempPathFactory) -> tuple[Persona, Persona]:
    folder = tmp_path_factory.mktemp("personas")
    robin = load_persona(str(write_persona(folder, "Robin", "jm_kumo", "short", "square")))
    ada = load_persona(str(write_persona(folder, "Ada", "jf_alpha", "bob", "oval")))
    return robin, ada


@pytest.fixture(scope="module")
def scene(
    tmp_path_factory: pytest.TempPathFactory, personas: tuple[Persona, Persona]
) -> tuple[DialogueResult, Path, dict[str, object]]:
    folder = tmp_path_factory.mktemp("scene")
    script = folder / "script.yaml"
    script.write_text(SCRIPT)
    lines = read_script(script, [speaker_names(p, p.identity.display_name) for p in personas])
    out, transcript = folder / "scene.mp4", folder / "scene.json"
    result = asyncio.run(dialogue(personas, ScriptedLines(lines), out, transcript, height=SIZE))
    return result, out, json.loads(transcript.read_text())


def test_two_lines_give_a_scene_as_long_as_its_transcript(
    scene: tuple[DialogueResult, Path, dict[str, object]],
) -> None:
    result, out, data = scene
    lines = data["lines"]
    assert isinstance(lines, list)
    assert [line["speaker"] for line in lines] == ["Robin", "Ada"]
    assert lines[1]["text"] == "I would like a card, please."
    video_s, audio_s = video_audio_durations(out)
    assert abs(video_s - audio_s) <= 0.05
    assert abs(audio_s - float(str(data["duration_s"]))) <= 0.05
    assert float(str(data["duration_s"])) == pytest.approx(lines[-1]["end"] + TAIL_S, abs=0.1)
    # The second line follows the first's last sound after a short gap (or a short overlap).
    gap = lines[1]["speech_start"] - lines[0]["speech_end"]
    assert -0.3 <= gap <= 0.55
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 2 * SIZE, SIZE)
        assert container.streams.audio[0].codec_context.name == "aac"
    assert set(result.metrics) >= {"backchannel", "mouth_rest", "energy_ratio", "lip_closure_f1"}


def mouth_box(persona: Persona) -> tuple[slice, slice]:
    """Where the mouth is drawn: the pixels that change between a closed and a wide-open jaw."""
    renderer = make_renderer(persona.appearance, SIZE, SIZE)
    closed = renderer.render(NEUTRAL).astype(np.int16)
    opened = renderer.render(frame(jaw_open=1.0)).astype(np.int16)
    ys, xs = np.nonzero(np.abs(opened - closed).max(axis=2) > 40)
    return slice(ys.min() - 2, ys.max() + 3), slice(xs.min() - 2, xs.max() + 3)


def test_each_half_moves_its_mouth_only_while_it_speaks(
    scene: tuple[DialogueResult, Path, dict[str, object]], personas: tuple[Persona, Persona]
) -> None:
    result, out, data = scene
    lines = data["lines"]
    assert isinstance(lines, list)
    with av.open(str(out)) as container:
        images = [f.to_ndarray(format="rgb24").astype(np.int16) for f in container.decode(video=0)]
    times = np.arange(len(images)) / FPS
    for half, persona in enumerate(personas):
        rows, cols = mouth_box(persona)
        crops = np.stack([image[:, half * SIZE : (half + 1) * SIZE][rows, cols] for image in images])
        change = np.abs(np.diff(crops, axis=0)).mean(axis=(1, 2, 3))  # (T-1,) between consecutive frames
        mine = next(line for line in lines if line["speaker"] == persona.identity.display_name)
        speaking = (times[1:] >= mine["speech_start"]) & (times[1:] <= mine["speech_end"])
        # Listening: the other's line plays, well clear of its own.
        other = next(line for line in lines if line is not mine)
        listening = (times[1:] >= other["speech_start"]) & (times[1:] <= other["speech_end"])
        listening &= (times[1:] < mine["start"] - 0.2) | (times[1:] > mine["end"] + 0.3)
        assert listening.sum() > 10
        assert change[speaking].mean() > 3 * change[listening].mean(), persona.identity.display_name
    assert result.metrics["mouth_rest"] >= 0.95


def test_the_listener_nods_after_its_partners_pause(
    scene: tuple[DialogueResult, Path, dict[str, object]],
) -> None:
    result, _, _ = scene
    robin, ada = result.tracks
    robin_active = speech_activity(robin.audio, robin.sample_rate, FPS, len(robin.motion))
    ada_active = speech_activity(ada.audio, ada.sample_rate, FPS, len(ada.motion))
    heard = pauses(robin_active, ada_active, FPS)
    assert heard, "Robin's line has pauses between its sentences"
    nods = nod_onsets(ada.motion, FPS)
    assert any(start <= t <= start + 1.0 for start, _ in heard for t in nods), (heard, nods)
    assert result.metrics["answered"] >= 1


def test_a_script_naming_someone_else_is_a_clear_error(
    tmp_path: Path, personas: tuple[Persona, Persona]
) -> None:
    script = tmp_path / "bad.yaml"
    script.write_text("- {speaker: Bob, text: Hello there.}\n")
    with pytest.raises(DialogueError, match="'Bob' is neither persona; use"):
        read_script(script, [speaker_names(p, p.identity.display_name) for p in personas])
    script.write_text("speaker: Robin\n")
    with pytest.raises(DialogueError, match="non-empty YAML list"):
        read_script(script, [speaker_names(p, p.identity.display_name) for p in personas])


def test_cli_needs_a_script_or_a_topic() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "integrations.cli.main", "dialogue", "--personas", "default", "default"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "--script FILE or --topic TEXT" in done.stderr


def test_llm_lines_lose_their_stage_directions() -> None:
    from integrations.files.dialogue import _spoken_form

    said = _spoken_form("(Ada smiles.)Hello *nods* there, **welcome**! [waves]")
    assert said == "Hello there, welcome!"


class CountingVoice:
    """A voice that says each text as a short tone and records which thread asked, in what order."""

    fps = FPS

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []  # (text, thread name)

    def utterance(self, text: str) -> Utterance:
        import threading

        self.calls.append((text, threading.current_thread().name))
        audio = np.full(2400, len(self.calls), np.int16)  # (S,) 0.1 s whose value numbers the call
        return Utterance(text, audio, np.zeros((3, MOTION_DIM), np.float32), FPS, [], [])


def test_a_line_is_synthesized_ahead_in_order_in_one_thread() -> None:
    from integrations.files.dialogue import RecordingVoice

    voice = CountingVoice()
    recording = RecordingVoice(voice)
    try:
        recording.ahead("Good morning. How can I help you today?")
        recording.ahead("Thank you.")
        said = [recording.utterance(text) for text in chunk_text("Good morning. How can I help you today?")]
        unknown = recording.utterance("Something else.")  # not asked ahead: synthesized now, after those
        thanks = recording.utterance("Thank you.")
    finally:
        recording.close()
    assert [text for text, _ in voice.calls] == [
        *chunk_text("Good morning. How can I help you today?"),
        "Thank you.",
        "Something else.",
    ]
    assert len({thread for _, thread in voice.calls}) == 1
    assert [int(u.audio[0]) for u in said] == list(range(1, len(said) + 1))
    assert int(thanks.audio[0]) == len(said) + 1 and int(unknown.audio[0]) == len(said) + 2
    assert recording.utterances == [*said, unknown, thanks]
