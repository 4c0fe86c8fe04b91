"""The `dyad` command line: help for every command, the not-yet-built commands, global options."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from integrations.cli.logs import JsonFormatter, configure_logging
from integrations.cli.main import app

runner = CliRunner()
COMMANDS = ["render", "converse", "serve", "livekit", "kiosk", "train", "persona", "doctor"]
SUBCOMMANDS = [
    ["livekit", "worker"], ["livekit", "join"], ["train", "data"], ["train", "fit"], ["train", "eval"],
    ["persona", "validate"], ["persona", "show"], ["persona", "list"], ["persona", "preview"],
]  # fmt: skip


def dyad_executable() -> str:
    found = shutil.which("dyad", path=str(Path(sys.executable).parent))
    assert found, "the dyad console script is not installed in this environment"
    return found


def test_console_script_help_lists_every_command() -> None:
    result = subprocess.run([dyad_executable(), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout
    assert "--log-level" in result.stdout and "--log-json" in result.stdout


@pytest.mark.parametrize("command", COMMANDS + [" ".join(c) for c in SUBCOMMANDS])
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_bad_log_level_is_rejected() -> None:
    result = runner.invoke(app, ["--log-level", "LOUD", "persona", "list"])
    assert result.exit_code == 2
    assert "LOUD" in result.output


def test_log_json_writes_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("DEBUG", as_json=True)
    logging.getLogger("dyad.test").info("turn ended", extra={"latency_ms": 412})
    line = capsys.readouterr().err.strip().splitlines()[-1]
    entry = json.loads(line)
    assert entry["msg"] == "turn ended" and entry["latency_ms"] == 412 and entry["level"] == "info"
    configure_logging("WARNING")


def test_json_formatter_includes_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exc"]


def test_persona_list_shows_shipped_personas() -> None:
    result = runner.invoke(app, ["persona", "list"])
    assert result.exit_code == 0
    assert "Robin" in result.output and "Sam" in result.output and "Ada" in result.output
