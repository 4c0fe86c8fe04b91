"""Contact sheets of both renderers: neutral, /a/, /o/, /m/, smile, blink, nod -> docs/img/*.png.

.venv/bin/python scripts/contact_sheets.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from avatar_core.config import StylizedFace
from avatar_core.motion import FloatArray, frame
from avatar_core.render.base import Renderer
from avatar_core.teacher.visemes import VISEMES

OUT = Path(__file__).resolve().parent.parent / "docs" / "img"


def poses() -> list[tuple[str, FloatArray]]:
    """The labelled poses of a sheet."""
    return [
        ("neutral", frame()),
        ("/a/", frame(**VISEMES["open"].targets)),
        ("/o/", frame(**VISEMES["round_open"].targets)),
        ("/m/", frame(**VISEMES["bilabial"].targets)),
        ("smile", frame(smile_l=0.9, smile_r=0.9, squint=0.4)),
        ("blink", frame(blink_l=1.0, blink_r=1.0)),
        ("nod", frame(head_pitch=0.2, brow_up_l=0.3, brow_up_r=0.3)),
    ]


def sheet(renderer: Renderer, size: int = 256) -> np.ndarray:
    """One row of labelled renders, RGB."""
    tiles = []
    for label, motion in poses():
        image = cv2.resize(renderer.render(motion), (size, size), interpolation=cv2.INTER_AREA)
        band = np.full((28, size, 3), 255, np.uint8)
        cv2.putText(band, label, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (20, 20, 20), 1, cv2.LINE_AA)
        tiles.append(np.vstack([image, band]))
    return np.hstack(tiles)


def main() -> None:
    from skimage.data import astronaut

    from avatar_core.render.portrait import PortraitRenderer
    from avatar_core.render.stylized import StylizedRenderer

    OUT.mkdir(parents=True, exist_ok=True)
    for name, renderer in (
        ("stylized", StylizedRenderer(StylizedFace(), 512, 512)),
        ("portrait", PortraitRenderer(astronaut(), 512, 512)),
    ):
        path = OUT / f"contact_{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(sheet(renderer), cv2.COLOR_RGB2BGR))
        print(path)


if __name__ == "__main__":
    main()
