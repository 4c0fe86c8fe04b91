"""The final Whisper pass: its cost and its words against the encoder window. Prints JSON.

    .venv/bin/python bench/stt_window.py [--windows 30 15 10 8 5] [--voices jm_kumo jf_alpha] [--joined 1 2 4]

faster-whisper pads every call to a 30 s encoder window; :class:`agent.stt.WhisperSTT` reads an
utterance on a window of its length plus a margin, at least ``min_window_s`` (30 = faster-whisper's own
path). For each window this transcribes the latency benchmark's questions (Kokoro speech, 16 kHz, the
voices given; ``--joined N`` also strings N questions into one longer utterance) with the live STT's
own code on one thread, and reports the time per call (p50/p95, by utterance length) and the word
error rate against the question text. Times on a busy machine are not the product's numbers; run it
with the machine otherwise idle.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import resample_poly

sys.path.insert(0, str(Path(__file__).parent))

from latency import QUESTIONS, command_line, emit, percentile

from agent.stt import UnclearSpeech, WhisperSTT
from avatar_core.config import AppSettings
from avatar_core.tts.kokoro import KokoroTTS

RATE = 16_000


def words(text: str) -> list[str]:
    """Lower-case words without punctuation ("Wi-Fi" and "wifi" are one word)."""
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", "")).split()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words): Levenshtein distance over words."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return row[len(hyp)], len(ref)


def utterances(voices: list[str], joined: list[int]) -> list[tuple[str, str, np.ndarray[Any, Any]]]:
    """(voice, text, 16 kHz audio) for every question, and for runs of ``n`` questions in a row."""
    tts = KokoroTTS(AppSettings().cache_dir)
    out = []
    for voice in voices:
        clips = [resample_poly(tts.synthesize(q, voice), 2, 3).astype(np.float32) for q in QUESTIONS]
        for n in joined:
            for start in range(0, len(QUESTIONS) - n + 1, n):
                text = " ".join(QUESTIONS[start : start + n])
                out.append((voice, text, np.concatenate(clips[start : start + n])))
    return out


async def run(windows: list[float], voices: list[str], joined: list[int]) -> dict[str, Any]:
    items = utterances(voices, joined)
    results: dict[str, Any] = {}
    for window in windows:
        stt = WhisperSTT(min_window_s=window)
        await stt.warmup()
        await stt.transcribe(items[0][2])  # the first call allocates
        errors = total = 0
        by_length: dict[str, list[float]] = {}
        wrong = []
        for voice, text, audio in items:
            started = time.perf_counter()
            try:
                said = await stt.transcribe(audio)
            except UnclearSpeech:  # the words were not made out: all of them count as errors
                said = ""
            ms = 1000 * (time.perf_counter() - started)
            seconds = audio.size / RATE
            by_length.setdefault(f"{int(seconds)}-{int(seconds) + 1} s", []).append(ms)
            e, n = word_errors(text, said)
            errors, total = errors + e, total + n
            if e:
                wrong.append({"voice": voice, "said": text, "heard": said})
        await stt.aclose()
        results[f"{window:g} s"] = {
            "wer": round(errors / total, 4),
            "word_errors": errors,
            "ms": {
                length: {"n": len(ms), "p50": percentile(ms, 50), "p95": percentile(ms, 95)}
                for length, ms in sorted(by_length.items())
            },
            "wrong": wrong,
        }
        print(f"window {window:g} s: WER {errors / total:.4f}", file=sys.stderr, flush=True)
    return {
        "bench": "stt_window",
        "command": command_line("bench/stt_window.py"),
        "date": date.today().isoformat(),
        "model": "Whisper tiny.en (faster-whisper int8, 1 thread, beam 1)",
        "utterances": len(items),
        "words": total,
        "min_window": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--windows", type=float, nargs="+", default=[30.0, 15.0, 10.0, 8.0, 5.0])
    parser.add_argument("--voices", nargs="+", default=["jm_kumo", "jf_alpha"])
    parser.add_argument("--joined", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    emit(asyncio.run(run(args.windows, args.voices, args.joined)), args.out)


if __name__ == "__main__":
    main()
