"""The renderer seam: a motion frame in, an RGB image out, plus the rig's 68 landmarks for measurement.

Landmarks follow the iBUG 300-W 68-point convention (0-16 jaw line, 17-26 brows, 27-35 nose, 36-47 eyes,
48-59 outer lip, 60-67 inner lip), in output-image pixel coordinates (x right, y down). Tests and
metrics measure the rendered mouth on them, e.g. :func:`inner_lip_gap`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]  # (H, W, 3) RGB
Points = npt.NDArray[np.float32]  # (68, 2) x, y in pixels

# Inner-lip landmark pairs facing each other across the mouth opening (upper, lower).
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))


@runtime_checkable
class Renderer(Protocol):
    """Draws the avatar. ``render`` is deterministic: the same motion gives the same image."""

    width: int
    height: int

    def render(self, motion: npt.NDArray[np.float32]) -> Image:
        """Motion frame (D,) -> RGB image (H, W, 3) uint8."""
        ...

    def landmarks(self, motion: npt.NDArray[np.float32]) -> Points:
        """The 68 rig landmarks (68, 2) that ``render`` would draw for this motion."""
        ...


def inner_lip_gap(points: Points) -> float:
    """Mean vertical distance in pixels between the upper and lower inner lip; 0 when the lips touch."""
    gaps = [max(0.0, float(points[lower, 1] - points[upper, 1])) for upper, lower in INNER_LIP_PAIRS]
    return float(np.mean(gaps))


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """'#rrggbb' -> (r, g, b)."""
    value = color.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
