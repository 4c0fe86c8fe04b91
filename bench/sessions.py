"""How many live sessions one machine holds, the models shared between them (one Whisper, the embedded
LLM servers (one per session unless ``DYAD_LLM_SERVERS`` caps them), one joint model, one Kokoro, one
knowledge index). Prints JSON, writes ``bench/results/sessions.json`` (or ``--out``).

    nice .venv/bin/python bench/sessions.py [--max 4] [--minutes 2] [--think 0.5,3] [--out PATH]

For N = 1, 2, ... ``--max`` it runs N concurrent sessions of :mod:`bench.soak`'s simulated person for
``--minutes``, each N in a fresh process (``bench/soak.py --sessions N``, so memory and CPU are that
N's alone), and reports per N the lowest per-session frame rate, frame gaps over 100 ms, voice-to-voice
p50/p95, turns answered, CPU cores (this process and the LLM server) and RSS, per session and added by
each session beyond the first. ``largest_n_holding`` is the largest N with >= 25 fps, no gap over 100 ms
and voice-to-voice p95 <= 2 s. Each person waits 0.5-3 s (``--think``) after an answer before asking
again, so the sessions' turns do not all end at the same moment as they would in lockstep.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS = HERE / "results"
MIN_FPS = 24.5  # 25 fps, allowing for the rounding of a short run
MAX_P95_MS = 2000.0
# People who think for exactly one second stay in step with those who started with them, so every turn
# of every session ends at once; real visitors of several rooms do not.
THINK_S = (0.5, 3.0)


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


def run_n(n: int, minutes: float, persona: str, think: str) -> dict[str, Any]:
    """``bench/soak.py --sessions n`` in its own process; its summary, condensed."""
    with tempfile.TemporaryDirectory(prefix="dyad-sessions-") as tmp:
        out = Path(tmp) / "soak.json"
        command = [
            sys.executable, str(HERE / "soak.py"), "--sessions", str(n), "--minutes", str(minutes),
            "--report-every", str(minutes), "--persona", persona, "--out", str(out),
            "--label", f"sessions={n}", "--think", think,
        ]  # fmt: skip
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
        if done.returncode != 0 or not out.exists():
            raise SystemExit(
                f"bench/soak.py --sessions {n} failed (exit {done.returncode}); see its output above"
            )
        result: dict[str, Any] = json.loads(out.read_text())
    final = result["final"]
    return {
        "sessions": n,
        "minutes": result["minutes"],
        "fps_min": result["fps_min"],
        "gaps_over_100ms": final["gaps_over_100ms"],
        "max_gap_ms": final["max_gap_ms"],
        "loop_lag_max_ms": final["loop_lag_max_ms"],
        "voice_to_voice_p50_ms": final["voice_to_voice_p50_ms"],
        "voice_to_voice_p95_ms": final["voice_to_voice_p95_ms"],
        "heard_voice_to_voice_p95_ms": final["heard_voice_to_voice_p95_ms"],
        "turns": final["turns"],
        "drift": final["drift"],
        "speech_underruns": final["speech_underruns_total"],
        "think_s": result["think_s"],  # as bench/soak.py read --think
        "cpu_cores": round(final["cpu_cores"] + final["llm_server_cpu_cores"] + final["render_cpu_cores"], 3),
        "render_cpu_cores": final["render_cpu_cores"],
        "render_rss_mb": final["render_rss_mb"],
        "cpu_cores_per_session": result["cpu_cores_per_session"],
        "rss_mb": final["rss_mb"],
        "rss_mb_after_models": result["rss_mb_after_models"],
        "rss_mb_per_session": result["rss_mb_per_session"],
        "load_avg_1m": final["load_avg_1m"],
        "errors": result["errors"],
        "final": final,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--max", type=int, default=4, help="the largest N tried")
    parser.add_argument("--minutes", type=float, default=2.0, help="per N")
    parser.add_argument("--persona", default="library_receptionist")
    parser.add_argument("--out", type=Path, default=RESULTS / "sessions.json")
    parser.add_argument(
        "--think",
        default=",".join(map(str, THINK_S)),
        help="seconds each person waits after an answer before the next question, the least and the most "
        "(bench/soak.py --think; 1,1 puts people who started together in step for the whole run)",
    )
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    think_s = None
    for n in range(1, args.max + 1):
        result = run_n(n, args.minutes, args.persona, args.think)
        result["holds"] = holds(result)
        final = result.pop("final")
        think_s = result.pop("think_s")
        if runs:  # what one more session costs, beyond the shared models the first one loaded
            first = runs[0]
            result["rss_mb_added_per_session"] = round((final["rss_mb"] - first["rss_mb"]) / (n - 1), 1)
            result["cpu_cores_added_per_session"] = round(
                (result["cpu_cores"] - first["cpu_cores"]) / (n - 1), 3
            )
        runs.append(result)
        print(json.dumps(result), flush=True)
    held = [r["sessions"] for r in runs if r["holds"]]
    summary = {
        "largest_n_holding": max(held, default=0),
        "targets": {"fps_min": MIN_FPS, "gaps_over_100ms": 0, "voice_to_voice_p95_ms": MAX_P95_MS},
        "runs": runs,
        "think_s": think_s,
        "machine": {"cpus": os.cpu_count()},
        "command": " ".join(["bench/sessions.py", *sys.argv[1:]]),
    }
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
