"""Persona loading, validation errors, environment overrides and the `dyad persona` commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.persona import Persona, PersonaError, available_personas, load_persona
from avatar_core.config import AppSettings
from integrations.cli.main import app

BROKEN = sorted((Path(__file__).parents[1] / "data" / "personas" / "broken").glob("*.yaml"))
runner = CliRunner()


def expected_of(path: Path) -> str:
    first = path.read_bytes().splitlines()[0].decode()
    assert first.startswith("# expect: "), path
    return first.removeprefix("# expect: ")


def test_there_are_at_least_30_broken_personas() -> None:
    assert len(BROKEN) >= 30


@pytest.mark.parametrize("name", ["default", "library_receptionist", "clinic_checkin"])
def test_shipped_personas_are_valid(name: str) -> None:
    persona = load_persona(name)
    assert isinstance(persona, Persona)
    assert persona.llm.system_prompt and persona.llm.fallback_line


def test_shipped_personas_differ_and_inherit_defaults() -> None:
    library, clinic = load_persona("library_receptionist"), load_persona("clinic_checkin")
    assert library.identity.display_name == "Robin" and clinic.identity.display_name == "Sam"
    assert library.voice.speaker != clinic.voice.speaker
    assert clinic.turn_taking.barge_in_min_speech_ms == 500
    # Not written in the file: the default from code.
    assert library.appearance.video.fps == 25 and library.stt.model == "tiny.en"


def test_available_personas_lists_default_and_files() -> None:
    names = available_personas(AppSettings())
    assert {"default", "library_receptionist", "clinic_checkin"} <= set(names)


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_broken_persona_is_rejected_naming_the_field(path: Path) -> None:
    with pytest.raises(PersonaError) as caught:
        load_persona(str(path))
    text = str(caught.value)
    assert expected_of(path) in text
    assert all(issue.hint for issue in caught.value.issues)


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_validate_command_exits_2_with_field_and_no_traceback(path: Path) -> None:
    result = runner.invoke(app, ["persona", "validate", str(path)])
    assert result.exit_code == 2, result.output
    assert expected_of(path) in result.output
    assert "hint:" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_validate_reports_every_error_not_just_the_first(tmp_path: Path) -> None:
    bad = tmp_path / "many.yaml"
    bad.write_text(
        "identity:\n  display_name: ''\n  livekit_identity: ok\n"
        "llm:\n  system_prompt: p\n  greeting: g\n  fallback_line: f\n  temperature: 9\n"
        "voice:\n  rate: 0\n  spekaer: jm_kumo\n"
    )
    with pytest.raises(PersonaError) as caught:
        load_persona(str(bad))
    locations = {issue.location for issue in caught.value.issues}
    assert locations == {"identity.display_name", "llm.temperature", "voice.rate", "voice.spekaer"}


def test_unknown_field_hint_lists_the_valid_names() -> None:
    path = next(p for p in BROKEN if p.stem == "unknown_llm_field")
    with pytest.raises(PersonaError) as caught:
        load_persona(str(path))
    assert "temperature" in caught.value.issues[0].hint


def test_validate_accepts_a_good_file(data_dir: Path) -> None:
    result = runner.invoke(app, ["persona", "validate", str(data_dir / "personas" / "valid_minimal.yaml")])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_portrait_path_is_relative_to_the_persona_file(tmp_path: Path) -> None:
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "me.png").write_bytes(b"\x89PNG\r\n")
    file = tmp_path / "me.yaml"
    file.write_text(
        "identity: {display_name: Me, livekit_identity: me}\n"
        "llm: {system_prompt: p, greeting: g, fallback_line: f}\n"
        "appearance: {renderer: portrait, portrait: faces/me.png}\n"
    )
    persona = load_persona(str(file))
    assert persona.appearance.portrait == tmp_path / "faces" / "me.png"


def test_environment_overrides_any_field() -> None:
    env = {"DYAD_LLM__BASE_URL": "http://127.0.0.1:11434/v1", "DYAD_LLM__TEMPERATURE": "0.1",
           "DYAD_APPEARANCE__VIDEO__FPS": "30", "DYAD_LOG_LEVEL": "DEBUG"}  # fmt: skip
    persona = load_persona("default", env=env)
    assert persona.llm.base_url == "http://127.0.0.1:11434/v1"
    assert persona.llm.temperature == 0.1
    assert persona.appearance.video.fps == 30


def test_bad_environment_override_names_the_variable() -> None:
    with pytest.raises(PersonaError) as caught:
        load_persona("default", env={"DYAD_TURN_TAKING__VAD_THRESHOLD": "loud"})
    assert "DYAD_TURN_TAKING__VAD_THRESHOLD" in str(caught.value)


def test_settings_select_persona_and_extra_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mine.yaml").write_text(
        "identity: {display_name: Mine, livekit_identity: mine}\n"
        "llm: {system_prompt: p, greeting: g, fallback_line: f}\n"
    )
    monkeypatch.setenv("DYAD_PERSONAS_DIR", str(tmp_path))
    monkeypatch.setenv("DYAD_PERSONA", "mine")
    assert load_persona().identity.display_name == "Mine"


def test_unknown_persona_name_lists_the_known_ones() -> None:
    with pytest.raises(PersonaError) as caught:
        load_persona("nobody")
    assert "library_receptionist" in caught.value.issues[0].hint


def test_show_prints_resolved_persona() -> None:
    result = runner.invoke(app, ["persona", "show", "clinic_checkin"])
    assert result.exit_code == 0, result.output
    assert "display_name: Sam" in result.output
    assert "end_of_turn_silence_ms: 700" in result.output
    assert "vad_threshold: 0.5" in result.output  # a default, resolved


def test_show_json_round_trips() -> None:
    result = runner.invoke(app, ["persona", "show", "default", "--json"])
    assert result.exit_code == 0
    assert Persona.model_validate_json(result.output) == load_persona("default")


def test_show_unknown_name_exits_2() -> None:
    result = runner.invoke(app, ["persona", "show", "nobody"])
    assert result.exit_code == 2
    assert "no persona named" in result.output


def test_persona_is_immutable() -> None:
    persona = load_persona("default")
    with pytest.raises(Exception, match="frozen"):
        persona.llm.temperature = 1.0  # type: ignore[misc]
