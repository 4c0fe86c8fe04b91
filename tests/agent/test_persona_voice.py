"""A joint-mode persona's speaker is checked against the checkpoint's speakers (read from its header)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from agent.persona import PersonaError, load_persona
from avatar_core.config import KOKORO_VOICES
from avatar_core.model.avflow import AVFlow
from avatar_core.model.config import SIZES, ModelConfig
from avatar_core.model.train import save_checkpoint
from avatar_core.text.frontend import VOCAB
from integrations.cli.main import app

runner = CliRunner()

PERSONA = """
identity:
  display_name: Kim
  livekit_identity: kim
voice:
  mode: {mode}
  speaker: {speaker}
llm:
  system_prompt: You are Kim.
  greeting: Hi.
  fallback_line: Sorry?
"""


def persona_file(folder: Path, speaker: str, mode: str = "joint") -> Path:
    path = folder / f"{speaker}_{mode}.yaml"
    path.write_text(PERSONA.format(mode=mode, speaker=speaker))
    return path


@pytest.fixture
def two_voices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """DYAD_MODEL -> an (untrained) tiny checkpoint that knows jf_alpha and jm_kumo."""
    torch.manual_seed(0)
    config = ModelConfig.model_validate({**SIZES["tiny"], "voices": ("jf_alpha", "jm_kumo")})
    path = tmp_path / "two.pt"
    save_checkpoint(path, AVFlow(config, len(VOCAB)), {"step": 0})
    monkeypatch.setenv("DYAD_MODEL", str(path))
    return path


def test_unknown_joint_speaker_is_an_error_naming_the_valid_ones(tmp_path: Path, two_voices: Path) -> None:
    with pytest.raises(PersonaError) as caught:
        load_persona(str(persona_file(tmp_path, "jf_nezumi")))
    [issue] = caught.value.issues
    assert issue.location == "voice.speaker"
    assert "jf_nezumi" in issue.message and "jf_alpha, jm_kumo" in issue.message
    assert "jf_alpha" in issue.hint and "cascade" in issue.hint


@pytest.mark.parametrize("speaker", KOKORO_VOICES)
def test_the_committed_checkpoint_speaks_every_kokoro_voice(tmp_path: Path, speaker: str) -> None:
    assert load_persona(str(persona_file(tmp_path, speaker))).voice.speaker == speaker


def test_cascade_speaks_any_kokoro_voice(tmp_path: Path) -> None:
    assert load_persona(str(persona_file(tmp_path, "jf_nezumi", "cascade"))).voice.speaker == "jf_nezumi"


def test_speakers_come_from_the_checkpoint_in_use(tmp_path: Path, two_voices: Path) -> None:
    assert load_persona(str(persona_file(tmp_path, "jm_kumo"))).voice.speaker == "jm_kumo"
    with pytest.raises(PersonaError, match="jf_alpha, jm_kumo"):
        load_persona(str(persona_file(tmp_path, "jf_tebukuro")))


def test_without_a_checkpoint_joint_mode_is_not_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Start-up then speaks with Kokoro and says so; there is no speaker list to check against.
    monkeypatch.setenv("DYAD_MODEL", str(tmp_path / "missing.pt"))
    assert load_persona(str(persona_file(tmp_path, "jf_nezumi"))).voice.mode == "joint"


def test_an_unreadable_checkpoint_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    monkeypatch.setenv("DYAD_MODEL", str(bad))
    with pytest.raises(PersonaError, match="cannot read the checkpoint"):
        load_persona(str(persona_file(tmp_path, "jf_alpha")))


def test_validate_command_lists_the_speakers(tmp_path: Path, two_voices: Path) -> None:
    result = runner.invoke(app, ["persona", "validate", str(persona_file(tmp_path, "jf_nezumi"))])
    assert result.exit_code == 2
    assert "voice.speaker" in result.output and "jf_alpha" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", ["default", "library_receptionist", "clinic_checkin"])
def test_shipped_personas_are_valid_against_the_committed_checkpoint(name: str) -> None:
    load_persona(name)


def test_shipped_personas_speak_in_different_voices() -> None:
    voices = {load_persona(n).voice.speaker for n in ("default", "library_receptionist", "clinic_checkin")}
    assert len(voices) == 3
