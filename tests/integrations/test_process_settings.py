"""The process-wide settings that `dyad` makes first thing (integrations/lifecycle.py): the malloc arena cap,
numpy's BLAS threads and CTranslate2's instruction set, each in the process and inherited by its children."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from integrations.lifecycle import CT2_AVX512_FLAGS, cpu_flags, select_ctranslate2_isa

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


def test_ctranslate2_gets_avx512_only_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # A copy of the environment: the setting must not reach Whisper loaded later in this process.
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != "CT2_FORCE_CPU_ISA"})
    assert not select_ctranslate2_isa(frozenset({"avx2", "avx512f"}))  # not every flag it needs
    assert "CT2_FORCE_CPU_ISA" not in os.environ
    assert select_ctranslate2_isa(CT2_AVX512_FLAGS | {"avx2"})
    assert os.environ["CT2_FORCE_CPU_ISA"] == "AVX512"
    os.environ["CT2_FORCE_CPU_ISA"] = "AVX2"  # the user's own choice
    assert not select_ctranslate2_isa(CT2_AVX512_FLAGS)
    assert os.environ["CT2_FORCE_CPU_ISA"] == "AVX2"


HEAR = """
import sys, numpy as np, asyncio
from integrations.lifecycle import prepare_process
prepare_process()
from agent.stt import WhisperSTT
speech = np.load(sys.argv[1])
print(asyncio.run(WhisperSTT().transcribe(speech)))
"""


@pytest.mark.skipif(not cpu_flags() >= CT2_AVX512_FLAGS, reason="the CPU has no AVX-512")
def test_whisper_hears_the_words_on_avx512(tmp_path: Path) -> None:
    from avatar_core.config import AppSettings
    from avatar_core.tts.kokoro import KokoroTTS

    audio = KokoroTTS(AppSettings().cache_dir).synthesize(
        "Could you tell me when the library opens?", "jm_kumo"
    )
    np.save(tmp_path / "speech.npy", resample_poly(audio, 2, 3).astype(np.float32))  # 24 -> 16 kHz
    heard = {}
    for isa in ("AVX2", None):  # CTranslate2's own choice, and the one prepare_process makes
        env = {k: v for k, v in os.environ.items() if k != "CT2_FORCE_CPU_ISA"} | {"CT2_VERBOSE": "1"}
        if isa is not None:
            env["CT2_FORCE_CPU_ISA"] = isa
        out = subprocess.run(
            [sys.executable, "-c", HEAR, str(tmp_path / "speech.npy")],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert f"Selected ISA: {isa or 'AVX512'}" in out.stderr
        heard[isa] = out.stdout.strip()
    for words in heard.values():  # the kernels differ in the last bits, not in what is heard
        assert "library" in words.lower() and "open" in words.lower(), heard
