"""How fast `dyad dialogue` makes a scene: scene seconds per wall second, CPU seconds per scene second, and
where the time goes. Prints JSON.

    nice .venv/bin/python bench/dialogue.py [--lines 4] [--height 0] [--seed 0] [--profile FILE]

The scene is the first ``--lines`` lines of ``examples/dialogue_reception.yaml``, played by
``library_receptionist`` and ``default`` (the README's example), written to a temporary MP4 at the
personas' own size (``--height 0``) or ``--height`` pixels high. The speed counts the scene alone (its
``wall_s``: from loading the voices to the file's end), not the interpreter's start.

``--profile FILE`` runs every thread under cProfile (the scene's work is in worker threads: synthesis,
rendering, encoding, perception), writes the merged statistics to FILE (``python -m pstats FILE``) and
adds the top functions by own time to the JSON. The profiler slows Python code, so its run is slower.

Figures from a machine that runs other work are not the product's: run it on a quiet 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import math
import pstats
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.persona import load_persona
from integrations.files.dialogue import ScriptedLines, dialogue, read_script, speaker_names

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "dialogue_reception.yaml"
PERSONAS = ("library_receptionist", "default")
TOP = 15
# Where idle threads wait (for work, a lock, the event loop): waiting, not work, so left out of the top.
WAITS = ("acquire' of '_thread", "poll' of 'select.epoll", "get' of '_queue.SimpleQueue", "wait' of")


class AllThreads:
    """cProfile in the calling thread and in every thread started while it is on; ``stats`` merges them."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _start_in_thread(self, *_: object) -> None:
        sys.setprofile(None)  # this hook only starts the thread's own profiler
        profile = cProfile.Profile()
        with self._lock:
            self.profiles.append(profile)
        profile.enable()

    def __enter__(self) -> AllThreads:
        threading.setprofile(self._start_in_thread)
        self._start_in_thread()
        return self

    def __exit__(self, *_: object) -> None:
        threading.setprofile(None)  # None removes the hook
        self.profiles[0].disable()

    def stats(self) -> pstats.Stats:
        """All threads' statistics together (a thread still running is read as it stands)."""
        merged = pstats.Stats(self.profiles[0], stream=io.StringIO())
        for profile in self.profiles[1:]:
            merged.add(profile)
        return merged


def top_functions(stats: pstats.Stats, count: int = TOP) -> list[dict[str, Any]]:
    """The ``count`` functions with the most own time (waits left out): where, calls, own and
    cumulative seconds."""
    rows = []
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]  # pstats keeps its table here
    for (filename, line, name), (_, calls, own, cumulative, _) in table.items():
        where = f"{Path(filename).name}:{line}({name})" if line else name
        if any(wait in name for wait in WAITS):
            continue
        rows.append(
            {"function": where, "calls": calls, "own_s": round(own, 2), "cum_s": round(cumulative, 2)}
        )
    rows.sort(key=lambda row: -float(row["own_s"]))
    return rows[:count]


async def scene(lines: int, height: int, seed: int) -> dict[str, Any]:
    """Play the scene once; its speed and listener metrics."""
    personas = [load_persona(name) for name in PERSONAS]
    names = [speaker_names(p, given) for p, given in zip(personas, PERSONAS, strict=True)]
    script = read_script(SCRIPT, names)[:lines]
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    with tempfile.TemporaryDirectory() as tmp:
        result = await dialogue(personas, ScriptedLines(script), Path(tmp) / "scene.mp4",
                                height=height or None, seed=seed)  # fmt: skip
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
    metrics = {
        k: result.metrics[k] for k in ("backchannel", "pauses", "answered", "mouth_rest", "energy_ratio")
    }
    return {
        "scene_s": result.duration_s,
        "wall_s": round(result.wall_s, 2),
        "speed": round(result.speed, 3),
        "speech_wait_s": round(result.speech_wait_s, 2),  # wall time the scene stood still for synthesis
        "cpu_s": round(cpu_s, 1),
        "cpu_per_scene_s": round(cpu_s / result.duration_s, 2),
        "metrics": {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()},
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=4, help="lines of the example scene to play")
    parser.add_argument("--height", type=int, default=0, help="video height (0: the personas' own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", type=Path, help="write cProfile statistics of all threads here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.profile is None:
        out = asyncio.run(scene(args.lines, args.height, args.seed))
    else:
        with AllThreads() as profiler:
            out = asyncio.run(scene(args.lines, args.height, args.seed))
        stats = profiler.stats()
        stats.dump_stats(args.profile)
        out["profile"] = {
            "file": str(args.profile),
            "threads": len(profiler.profiles),
            "top_own_time": top_functions(stats),
        }
    out["command"] = "nice .venv/bin/python bench/dialogue.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    out["process_wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
