"""Whisper on CTranslate2's AVX2 kernels against its AVX-512 ones: time per call and the words, in one run.
Prints JSON; ``--out`` also writes it.

    nice -n -10 .venv/bin/python bench/stt_isa.py [--rounds 4] [--voices all] [--joined 1 2]
        [--out bench/results/stt_isa.json]

CTranslate2 picks its instruction set once per process (``CT2_FORCE_CPU_ISA``; it never picks AVX-512 by
itself), so each round runs one child process per instruction set, in alternating order, each transcribing
every utterance once with the live STT's own code (:class:`agent.stt.WhisperSTT`, one thread, the bundled
tiny.en) after a warm-up call. The utterances are the latency benchmark's questions spoken by Kokoro
(bench/stt_window.py). The machine's speed drifts within minutes, so the comparison is the ratio of the two
medians within each round; the words do not change from round to round (one instruction set decodes
deterministically). `dyad` uses AVX-512 where the CPU has it (integrations/lifecycle.py:
select_ctranslate2_isa). Run it with the machine otherwise idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from latency import command_line, emit, percentile
from stt_window import utterances, word_errors, words

from avatar_core.config import KOKORO_VOICES
from integrations.lifecycle import CT2_AVX512_FLAGS, cpu_flags, prepare_process

ISAS = ("AVX2", "AVX512")


async def child(clips: Path) -> dict[str, Any]:
    """In a child process: every clip of ``clips`` (an .npz of 16 kHz arrays) transcribed once, timed."""
    from agent.stt import UnclearSpeech, WhisperSTT

    stt = WhisperSTT()
    await stt.warmup()
    with np.load(clips) as data:
        audio = [data[name] for name in sorted(data.files, key=int)]
    await stt.transcribe(audio[0])  # the first call allocates
    heard, ms = [], []
    for samples in audio:
        started = time.perf_counter()
        try:
            heard.append(await stt.transcribe(samples))
        except UnclearSpeech:  # no words made out: every word counts as an error
            heard.append("")
        ms.append(1000 * (time.perf_counter() - started))
    await stt.aclose()
    return {"heard": heard, "ms": ms}


def run_child(isa: str, clips: Path) -> dict[str, Any]:
    env = {**os.environ, "CT2_FORCE_CPU_ISA": isa}
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(clips)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def run(rounds: int, voices: list[str], joined: list[int]) -> dict[str, Any]:
    items = utterances(voices, joined)
    texts = [text for _voice, text, _audio in items]
    per_round: list[dict[str, float]] = []
    ms: dict[str, list[float]] = {isa: [] for isa in ISAS}
    heard: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as folder:
        clips = Path(folder) / "clips.npz"
        arrays: dict[str, Any] = {str(i): audio for i, (_v, _t, audio) in enumerate(items)}
        np.savez(clips, allow_pickle=False, **arrays)
        for r in range(rounds):
            medians = {}
            for isa in ISAS if r % 2 == 0 else ISAS[::-1]:
                result = run_child(isa, clips)
                heard.setdefault(isa, result["heard"])
                ms[isa] += result["ms"]
                medians[isa] = float(np.median(result["ms"]))
                print(f"round {r + 1} {isa}: {medians[isa]:.1f} ms p50", file=sys.stderr, flush=True)
            per_round.append({f"{isa}_p50_ms": round(medians[isa], 1) for isa in ISAS})
            per_round[-1]["ratio"] = round(medians["AVX512"] / medians["AVX2"], 3)
    total = sum(len(words(text)) for text in texts)
    heard_words = {}
    for isa in ISAS:
        errors = sum(word_errors(text, said)[0] for text, said in zip(texts, heard[isa], strict=True))
        heard_words[isa] = {"wer": round(errors / total, 4), "word_errors": errors}
    differ = [
        {"said": text, "AVX2": a, "AVX512": b}
        for text, a, b in zip(texts, heard["AVX2"], heard["AVX512"], strict=True)
        if a != b
    ]
    return {
        "bench": "stt_isa",
        "command": command_line("bench/stt_isa.py"),
        "date": date.today().isoformat(),
        "model": "Whisper tiny.en (faster-whisper int8, 1 thread, beam 1, the live STT's window)",
        "utterances": len(items),
        "words": total,
        "rounds": per_round,
        "ratio_avx512_to_avx2": {
            "median_of_rounds": round(float(np.median([r["ratio"] for r in per_round])), 3),
            "min": min(r["ratio"] for r in per_round),
            "max": max(r["ratio"] for r in per_round),
        },
        "ms": {isa: {"p50": percentile(ms[isa], 50), "p95": percentile(ms[isa], 95)} for isa in ISAS},
        "words_heard": heard_words,
        "transcripts_that_differ": differ,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--voices", default="all", help=f"comma-separated, or 'all': {', '.join(KOKORO_VOICES)}"
    )
    parser.add_argument("--joined", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    prepare_process()  # as `dyad` does (each child's instruction set is then set for it)
    if args.child is not None:
        print(json.dumps(asyncio.run(child(args.child))))
        return
    if not cpu_flags() >= CT2_AVX512_FLAGS:
        sys.exit("this CPU has no AVX-512 (CTranslate2 needs avx512f, cd, vl, dq and bw): nothing to compare")
    voices = list(KOKORO_VOICES) if args.voices == "all" else args.voices.split(",")
    if args.rounds < 1 or not set(voices) <= set(KOKORO_VOICES):
        sys.exit(f"--rounds must be >= 1 and --voices among {', '.join(KOKORO_VOICES)}")
    emit(run(args.rounds, voices, args.joined), args.out)


if __name__ == "__main__":
    main()
