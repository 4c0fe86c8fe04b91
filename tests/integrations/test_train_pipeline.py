"""`dyad train data` -> `fit` -> `export` -> `eval` on a few seconds of real teacher data."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avatar_core.data.samples import iter_samples, sample_paths
from avatar_core.speech.features import MODEL_FPS

DYAD = [sys.executable, "-m", "integrations.cli.main"]
TINY = Path(__file__).resolve().parents[2] / "configs" / "model" / "tiny.yaml"


def dyad(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DYAD, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "teacher"
    done = dyad("train", "data", "--out", str(out), "--hours", "0.006")
    assert done.returncode == 0, done.stderr
    return out


def test_teacher_data_has_speaking_and_listening_samples(dataset: Path) -> None:
    samples = list(iter_samples(dataset))
    hours = sum(s.frames for s in samples) / MODEL_FPS / 3600
    assert hours >= 0.006
    roles = {s.role for s in samples}
    assert roles == {"speak", "listen"}
    for s in samples:
        s.check()
        if s.role == "speak":
            assert s.tokens[0] == 0 and s.tokens[-1] == 0 and s.tokens.size > 3
            assert s.speech[:, 1].mean() > 0.2  # voiced frames: there is speech
            assert s.motion[:, 0].max() > 0.2  # the jaw opens
            assert not s.partner[:, 0].any()  # the partner is silent
        else:
            assert s.tokens.tolist() == [0]
            assert s.partner[:, 0].mean() > 0.3  # the partner speaks much of the time
    manifest = (dataset / "manifest.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["name"] for line in manifest) == [p.stem for p in sample_paths(dataset)]


def test_teacher_data_resumes_and_refuses_other_options(dataset: Path) -> None:
    before = [p.name for p in sample_paths(dataset)]
    again = dyad("train", "data", "--out", str(dataset), "--hours", "0.006")
    assert again.returncode == 0, again.stderr
    assert [p.name for p in sample_paths(dataset)] == before  # nothing to add, nothing rewritten
    other = dyad("train", "data", "--out", str(dataset), "--hours", "0.006", "--voices", "jm_kumo")
    assert other.returncode == 2 and "use another --out folder" in other.stderr


def test_fit_resumes_writes_curves_and_eval_reports_four_systems(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = dyad(
        "train", "fit", "--config", str(TINY), "--data", str(dataset), "--out", str(run), "--steps", "20"
    )
    assert first.returncode == 0, first.stderr
    assert (run / "last.pt").exists() and (run / "loss.png").exists()
    second = dyad(
        "train", "fit", "--config", str(TINY), "--data", str(dataset), "--out", str(run), "--steps", "30"
    )
    assert second.returncode == 0, second.stderr
    with open(run / "loss.csv") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    assert steps == [10, 20, 30]  # the second run continued at step 20
    losses = np.loadtxt(run / "loss.csv", delimiter=",", skiprows=1)[:, 1]
    assert np.isfinite(losses).all()

    small = tmp_path / "avflow.pt"
    exported = dyad("train", "export", str(run / "last.pt"), str(small))
    assert exported.returncode == 0, exported.stderr
    assert small.stat().st_size < (run / "last.pt").stat().st_size  # no optimiser state
    broken = dyad("train", "export", str(tmp_path / "missing.pt"), str(tmp_path / "x.pt"))
    assert broken.returncode != 0 and "missing.pt" in broken.stderr + broken.stdout

    report = tmp_path / "eval"
    done = dyad(
        "train",
        "eval",
        "--checkpoint",
        str(small),
        "--limit",
        "2",
        "--steps",
        "2",
        "--out",
        str(report),
    )
    assert done.returncode == 0, done.stderr
    data = json.loads((report / "report.json").read_text())
    results = data["results"]
    assert set(results) == {"teacher", "joint", "cascade", "ceiling"}
    for name in ("teacher", "joint", "cascade"):
        assert {"wer", "lip_closure_f1", "beat_align_head", "beat_align_face", "rtf"} <= set(results[name])
    assert results["teacher"]["wer"] <= 0.2  # Kokoro through Whisper: the judge works
    assert results["teacher"]["lip_closure_f1"] == pytest.approx(1.0)  # the teacher seals every bilabial
    assert {"first_chunk_ms", "speedup_vs_kokoro", "mcd_db"} <= set(results["joint"])
    assert (report / "report.md").exists() and (report / "metrics.png").exists()


def test_fit_with_a_broken_config_names_the_field(tmp_path: Path, dataset: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("size: tiny\ntrain:\n  batch_size: 0\n")
    done = dyad("train", "fit", "--config", str(bad), "--data", str(dataset), "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "train.batch_size" in done.stderr
