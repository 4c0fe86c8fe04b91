"""Native memory of the joint model as it speaks, with torch's oneDNN kernels on and off. Prints JSON.

    nice .venv/bin/python bench/memory.py [--utterances 200] [--every 25] [--out FILE]

Each setting runs in its own process: the bundled joint model (network + neural vocoder, one thread)
speaks ``--utterances`` training-split sentences, the five voices in turn, and every ``--every``
utterances the process reports its resident memory (anonymous, the heaps) and glibc's malloc counts
(``mallinfo2``: in use, and freed but held). Growth is counted from the first report, so the first
``--every`` utterances (first-use allocations) do not count; the real-time factor of the same run shows
what the setting costs. docs/design.md, "Memory".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(onednn: bool, utterances: int, every: int) -> None:
    """Speak and print one JSON line per report (runs in its own process)."""
    from avatar_core.data import corpus
    from avatar_core.model.inference import JointModel
    from bench.soak import MemoryTrace, rss_parts

    model = JointModel(None, threads=1, onednn=onednn)
    trace = MemoryTrace()
    sentences = corpus.split("train")[:utterances]
    voices = model.voices
    busy = audio = 0.0
    for i, text in enumerate(sentences, 1):
        start = time.perf_counter()
        out = model.generate(text, voices[i % len(voices)])
        busy += time.perf_counter() - start
        audio += out.duration_s
        if i % every == 0:
            line = {"utterances": i, **rss_parts(), **trace.report(), "rtf": round(busy / audio, 4)}
            print(json.dumps(line), flush=True)


def growth(reports: list[dict[str, Any]]) -> dict[str, float]:
    """MB per 100 utterances from the first report to the last, for each memory figure."""
    first, last = reports[0], reports[-1]
    span = (last["utterances"] - first["utterances"]) / 100
    keys = ("rss_anon_mb", "malloc_in_use_mb", "malloc_free_held_mb")
    return {f"{k}_per_100": round((last[k] - first[k]) / span, 2) for k in keys if k in last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--utterances", type=int, default=200)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.utterances < 2 * args.every:
        parser.error("--utterances must be at least twice --every (growth is counted between reports)")
    if args.child:
        child(args.child == "on", args.utterances, args.every)
        return
    results: dict[str, Any] = {}
    for setting in ("on", "off"):
        command = [sys.executable, __file__, "--child", setting]
        command += ["--utterances", str(args.utterances), "--every", str(args.every)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        figures = {**growth(reports), "rtf": reports[-1]["rtf"]}
        results[f"onednn_{setting}"] = {**figures, "reports": reports}
        print(json.dumps({"onednn": setting, **figures}), flush=True)
    summary = {
        "bench": "memory",
        "date": time.strftime("%Y-%m-%d"),
        "command": f"bench/memory.py --utterances {args.utterances} --every {args.every}",
        "utterances": args.utterances,
        "rtf_off_over_on": round(results["onednn_off"]["rtf"] / results["onednn_on"]["rtf"], 3),
        **results,
    }
    print(json.dumps({"rtf_off_over_on": summary["rtf_off_over_on"]}))
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
