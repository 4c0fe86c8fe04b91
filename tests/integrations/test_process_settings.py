"""The process-wide settings that `dyad` makes first thing (integrations/lifecycle.py): the malloc arena cap
and numpy's BLAS threads, each in the process and inherited by its children."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import os, subprocess, sys
import numpy
from threadpoolctl import threadpool_info
from integrations.lifecycle import cap_malloc_arenas, limit_blas_threads
print(cap_malloc_arenas())
print(limit_blas_threads())
print(min(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"))
child = "import os; print(os.environ.get('MALLOC_ARENA_MAX'), os.environ.get('OPENBLAS_NUM_THREADS'))"
out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)
print(out.stdout.strip())
"""
SETTINGS = ("MALLOC_ARENA_MAX", "OPENBLAS_NUM_THREADS")


def _run(env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout.split()


def test_the_settings_hold_in_the_process_and_its_children() -> None:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    capped, limited, blas_threads, arenas, child_blas = _run(env)
    if sys.platform.startswith("linux"):
        assert capped == "True"
    assert (limited, blas_threads, arenas, child_blas) == ("True", "1", "2", "1")


def test_a_users_own_settings_are_left_alone() -> None:
    env = {**os.environ, "MALLOC_ARENA_MAX": "4", "OPENBLAS_NUM_THREADS": "2"}
    assert _run(env) == ["False", "False", "2", "4", "2"]
