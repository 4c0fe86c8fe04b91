"""Shared fixtures.

The whole run uses one temporary ``DYAD_CACHE_DIR`` (set before any test module is imported, so
module-level ``AppSettings().cache_dir`` sees it): tests never read or write the user's ``~/.cache/dyad``.
Kokoro is assembled into it once per run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
_CACHE: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Point DYAD_CACHE_DIR at a fresh temporary folder for this run."""
    global _CACHE
    _CACHE = Path(tempfile.mkdtemp(prefix="dyad-test-cache-"))
    os.environ["DYAD_CACHE_DIR"] = str(_CACHE)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the run's cache folder."""
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_dyad_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from a clean DYAD_* environment, whatever the shell running them has set."""
    for var in list(os.environ):
        if var.startswith("DYAD_") and var != "DYAD_CACHE_DIR":
            monkeypatch.delenv(var)


@pytest.fixture
def data_dir() -> Path:
    """tests/data."""
    return DATA
