"""The committed checkpoint is package data: a built wheel carries it and an installed copy finds it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from avatar_core.model.checkpoint import bundled_checkpoint, checkpoint_voices

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "agent", "avatar_core", "integrations", "configs")
MEMBER = "avatar_core/assets/avflow/avflow.pt"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the source tree (the build never writes into the checkout)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif path.exists():
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            ".",
        ],
        cwd=src,
        check=True,
        capture_output=True,
    )
    [built] = out.glob("dyad-*.whl")
    return built


def test_wheel_carries_the_checkpoint_and_its_model_card(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert MEMBER in names and "avatar_core/assets/avflow/README.md" in names
        assert archive.read(MEMBER) == bundled_checkpoint().read_bytes()


def test_installed_package_finds_its_checkpoint(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    probe = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from avatar_core.model.checkpoint import bundled_checkpoint, checkpoint_voices;"
        "p = bundled_checkpoint();"
        "print(json.dumps({'path': str(p), 'exists': p.exists(), 'voices': checkpoint_voices(p)}))"
    )
    # -S: no site-packages, so no editable install of this checkout can answer instead of the wheel.
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(site)],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    )
    found = json.loads(result.stdout)
    assert found["exists"] and Path(found["path"]) == site / MEMBER
    assert tuple(found["voices"]) == checkpoint_voices(bundled_checkpoint())
