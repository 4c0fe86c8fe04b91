"""The process-wide malloc arena cap that `dyad` sets first thing (integrations/lifecycle.py)."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import os, subprocess, sys
from integrations.lifecycle import cap_malloc_arenas
print(cap_malloc_arenas())
print(subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('MALLOC_ARENA_MAX'))"],
                     capture_output=True, text=True, check=True).stdout.strip())
"""


def _run(env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout.split()


def test_cap_is_set_in_the_process_and_inherited_by_its_children() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    if sys.platform.startswith("linux"):
        assert _run(env) == ["True", "2"]
    else:
        assert _run(env)[1] == "2"


def test_a_users_own_setting_is_left_alone() -> None:
    env = {**os.environ, "MALLOC_ARENA_MAX": "4"}
    assert _run(env) == ["False", "4"]
