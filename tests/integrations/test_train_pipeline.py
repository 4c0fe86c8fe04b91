"""`dyad train data` -> `fit` -> `export` -> `eval` on a few seconds of real teacher data."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

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


def test_pack_keeps_the_training_features_and_unpacks_to_a_folder_fit_reads(
    dataset: Path, tmp_path: Path
) -> None:
    packed = tmp_path / "data.npz"
    done = dyad("train", "pack", "--data", str(dataset), "--out", str(packed))
    assert done.returncode == 0, done.stderr
    folder_bytes = sum(p.stat().st_size for p in sample_paths(dataset))
    assert packed.stat().st_size < folder_bytes / 5  # no audio, float16, compressed
    back = tmp_path / "unpacked"
    done = dyad("train", "unpack", str(packed), "--out", str(back))
    assert done.returncode == 0, done.stderr
    before, after = list(iter_samples(dataset)), list(iter_samples(back))
    assert [s.meta() for s in after] == [s.meta() for s in before]
    for old, new in zip(before, after, strict=True):
        assert new.audio is None
        assert np.array_equal(new.tokens, old.tokens) and np.array_equal(new.durations, old.durations)
        for key in ("speech", "motion", "partner"):
            # float16: about three significant digits
            np.testing.assert_allclose(getattr(new, key), getattr(old, key), rtol=1e-3, atol=1e-3)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a pack")
    done = dyad("train", "unpack", str(broken), "--out", str(tmp_path / "x"))
    assert done.returncode == 2 and "dyad train pack" in done.stderr


def test_fit_fine_tunes_from_a_checkpoint_of_the_same_network(dataset: Path, tmp_path: Path) -> None:
    first, tuned = tmp_path / "first", tmp_path / "tuned"
    args = ["train", "fit", "--config", str(TINY), "--data", str(dataset), "--steps", "10"]
    done = dyad(*args, "--out", str(first))
    assert done.returncode == 0, done.stderr
    done = dyad(*args, "--out", str(tuned), "--init", str(first / "last.pt"))
    assert done.returncode == 0, done.stderr

    def first_loss(run: Path) -> float:
        with open(run / "loss.csv") as f:
            return float(next(csv.DictReader(f))["total"])

    # the tuned run starts where the first one ended, not from scratch (tiny steps move little)
    assert first_loss(tuned) < first_loss(first)
    missing = dyad(*args, "--out", str(tmp_path / "m"), "--init", str(tmp_path / "missing.pt"))
    assert missing.returncode == 2 and "missing.pt" in missing.stderr
    small = Path(__file__).resolve().parents[2] / "configs" / "model" / "gpu5-small.yaml"
    other = dyad(
        "train", "fit", "--config", str(small), "--data", str(dataset), "--steps", "1",
        "--out", str(tmp_path / "o"), "--init", str(first / "last.pt"),
    )  # fmt: skip
    assert other.returncode == 2 and "its network" in other.stderr


def test_fit_with_a_weight_average_saves_it_as_the_network_and_resumes_both(
    dataset: Path, tmp_path: Path
) -> None:
    config = tmp_path / "ema.yaml"
    config.write_text(TINY.read_text() + "  ema_decay: 0.9\n")
    run = tmp_path / "run"
    args = ["train", "fit", "--config", str(config), "--data", str(dataset), "--out", str(run)]
    assert (done := dyad(*args, "--steps", "20")).returncode == 0, done.stderr
    state = torch.load(run / "last.pt", weights_only=False)
    averaged, trained = state["state_dict"], state["train_state_dict"]
    moved = [k for k in trained if not torch.equal(averaged[k], trained[k])]
    assert moved and all(".scale" not in k and "_mean" not in k for k in moved)  # weights, not statistics
    assert (done := dyad(*args, "--steps", "30")).returncode == 0, done.stderr
    resumed = torch.load(run / "last.pt", weights_only=False)
    assert resumed["step"] == 30
    # the average continued from the saved one: it lags the weights but has moved since step 20
    assert not torch.equal(resumed["state_dict"][moved[0]], averaged[moved[0]])
    assert not torch.equal(resumed["state_dict"][moved[0]], resumed["train_state_dict"][moved[0]])
    small = tmp_path / "avflow.pt"
    assert dyad("train", "export", str(run / "last.pt"), str(small)).returncode == 0
    exported = torch.load(small, weights_only=False)
    assert "train_state_dict" not in exported
    assert torch.equal(exported["state_dict"][moved[0]], resumed["state_dict"][moved[0]])


def test_gpu_fit_trains_runs_side_by_side_and_brings_back_exports(dataset: Path, tmp_path: Path) -> None:
    packed = tmp_path / "data.npz"
    assert dyad("train", "pack", "--data", str(dataset), "--out", str(packed)).returncode == 0
    out = tmp_path / "out"
    script = Path(__file__).resolve().parents[2] / "scripts" / "gpu_fit.py"
    done = subprocess.run(
        [sys.executable, str(script), "--pack", str(packed), "--out", str(out), "--minutes", "0.05",
         "--work", str(tmp_path / "work"), f"a={TINY}", f"b={TINY}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["runs"]) == {"a", "b"}
    for name in ("a", "b"):
        assert summary["runs"][name]["exit_code"] == 0
        with tarfile.open(out / f"{name}.tar.gz") as tar:
            assert {"loss.csv", f"{name}.pt"} <= set(tar.getnames())


def test_vocoder_fit_names_a_missing_mix_folder(dataset: Path, tmp_path: Path) -> None:
    tiny = TINY.parents[1] / "vocoder" / "tiny.yaml"
    done = dyad(
        "vocoder", "fit", "--config", str(tiny), "--data", str(dataset), "--steps", "1",
        "--mix", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert done.returncode == 2 and "--mix" in done.stderr and "nowhere" in done.stderr
    assert not (tmp_path / "run" / "last.pt").exists()
