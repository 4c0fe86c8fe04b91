"""Renderer speed: frames per second of each renderer at 256 and 512 on one thread. Prints JSON.

    .venv/bin/python bench/render.py [--frames 300]

The portrait renderer animates skimage's astronaut photo (public domain, NASA).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np

from avatar_core.config import StylizedFace
from avatar_core.motion import HIGH, LOW, MOTION_DIM, clip
from avatar_core.render.base import Renderer


def motions(count: int, seed: int = 0) -> np.ndarray:
    """Random in-range motions (N, D), drifting smoothly like real motion does."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 0.08, size=(count, MOTION_DIM)), axis=0)
    mid, half = (HIGH + LOW) / 2, (HIGH - LOW) / 2
    return clip(mid + half * np.tanh(walk)).astype(np.float32)


def measure(renderer: Renderer, frames: int) -> dict[str, float]:
    batch = motions(frames)
    for m in batch[:10]:  # warm caches
        renderer.render(m)
    start = time.perf_counter()
    for m in batch:
        renderer.render(m)
    elapsed = time.perf_counter() - start
    return {"fps": round(frames / elapsed, 1), "ms_per_frame": round(1000 * elapsed / frames, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    from skimage.data import astronaut

    from avatar_core.render.portrait import PortraitRenderer
    from avatar_core.render.stylized import StylizedRenderer

    results = []
    for size in (256, 512):
        for name, make in (
            ("stylized", lambda s: StylizedRenderer(StylizedFace(), s, s)),
            ("portrait", lambda s: PortraitRenderer(astronaut(), s, s)),
        ):
            results.append({"renderer": name, "size": size, "threads": 1, **measure(make(size), args.frames)})
    print(json.dumps({"bench": "render", "machine": platform.processor() or platform.machine(),
                      "cpus": os.cpu_count(), "results": results}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
