"""How many live sessions one machine holds, the models shared between them (one Whisper, one LLM
server, one joint model). Prints JSON, writes ``bench/results/sessions.json``.

    nice .venv/bin/python bench/sessions.py [--max 4] [--minutes 2]

For N = 1, 2, ... it runs N concurrent sessions of :mod:`bench.soak`'s simulated person for
``--minutes`` each and reports the lowest per-session frame rate, frame gaps over 100 ms, voice-to-voice
p95, and CPU (cores, this process and the LLM server) and RSS per session; ``largest_n_holding`` is the
largest N with >= 25 fps, no gap over 100 ms and voice-to-voice p95 <= 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from soak import RESULTS, run_sessions

from agent.persona import load_persona

MIN_FPS = 24.5  # 25 fps, allowing for the rounding of a short run
MAX_P95_MS = 2000.0


def holds(result: dict[str, Any]) -> bool:
    """Whether N sessions held the targets."""
    final = result["final"]
    p95 = final["voice_to_voice_p95_ms"]
    return bool(
        result["fps_min"] >= MIN_FPS
        and final["gaps_over_100ms"] == 0
        and p95 is not None
        and p95 <= MAX_P95_MS
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--max", type=int, default=4, help="the largest N tried")
    parser.add_argument("--minutes", type=float, default=2.0, help="per N")
    parser.add_argument("--persona", default="library_receptionist")
    parser.add_argument("--out", type=Path, default=RESULTS / "sessions.json")
    args = parser.parse_args()
    persona = load_persona(args.persona)
    runs = []
    for n in range(1, args.max + 1):
        result = asyncio.run(run_sessions(persona, n, args.minutes, args.minutes, f"sessions={n}"))
        result.pop("reports")
        result["holds"] = holds(result)
        runs.append(result)
        print(json.dumps(result), flush=True)
    held = [r["sessions"] for r in runs if r["holds"]]
    summary = {"largest_n_holding": max(held, default=0), "runs": runs, "machine": {"cpus": os.cpu_count()}}
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
