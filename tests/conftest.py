"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _no_dyad_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from a clean DYAD_* environment, whatever the shell running them has set."""
    import os

    for var in list(os.environ):
        if var.startswith("DYAD_") and var != "DYAD_CACHE_DIR":
            monkeypatch.delenv(var)


@pytest.fixture
def data_dir() -> Path:
    """tests/data."""
    return DATA
