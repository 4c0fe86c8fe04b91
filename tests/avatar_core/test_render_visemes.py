"""Both renderers against the teacher's visemes and the whole motion range."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_core.config import StylizedFace
from avatar_core.motion import HIGH, LOW, MOTION_DIM, NEUTRAL, frame
from avatar_core.render.base import Renderer, inner_lip_gap
from avatar_core.teacher.visemes import VISEMES


@pytest.fixture(scope="module", params=["stylized", "portrait"])
def renderer(request: pytest.FixtureRequest) -> Renderer:
    if request.param == "stylized":
        from avatar_core.render.stylized import StylizedRenderer

        return StylizedRenderer(StylizedFace(), 256, 256)
    from skimage.data import astronaut

    from avatar_core.render.portrait import PortraitRenderer

    return PortraitRenderer(astronaut(), 256, 256)


def mouth_box(renderer: Renderer, margin: int = 6) -> tuple[slice, slice]:
    lips = renderer.landmarks(NEUTRAL)[48:68]
    x0, y0 = np.floor(lips.min(axis=0)).astype(int) - margin
    x1, y1 = np.ceil(lips.max(axis=0)).astype(int) + margin
    return slice(max(0, y0), y1), slice(max(0, x0), x1)


@pytest.mark.parametrize("cls", [c for c in VISEMES if c != "rest"])
def test_every_viseme_changes_the_mouth(renderer: Renderer, cls: str) -> None:
    rows, cols = mouth_box(renderer)
    neutral = renderer.render(NEUTRAL)[rows, cols].astype(int)
    shaped = renderer.render(frame(**VISEMES[cls].targets))[rows, cols].astype(int)  # type: ignore[index]
    assert np.abs(shaped - neutral).mean() > 1.0, cls


def test_bilabial_closes_and_open_vowel_opens_the_lips(renderer: Renderer) -> None:
    assert inner_lip_gap(renderer.landmarks(frame(**VISEMES["bilabial"].targets))) == 0.0
    assert inner_lip_gap(renderer.landmarks(frame(jaw_open=0.6, lips_pressed=1.0))) == 0.0
    assert inner_lip_gap(renderer.landmarks(frame(**VISEMES["open"].targets))) > 0.03 * renderer.height


def extreme_motions() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    corners = [np.where(rng.uniform(size=MOTION_DIM) < 0.5, LOW, HIGH) for _ in range(40)]
    return [LOW.copy(), HIGH.copy(), *corners, *rng.uniform(LOW, HIGH, size=(20, MOTION_DIM))]


def test_any_motion_in_range_renders_valid_deterministic_pixels(renderer: Renderer) -> None:
    for motion in extreme_motions():
        image = renderer.render(motion.astype(np.float32))
        assert image.shape == (renderer.height, renderer.width, 3) and image.dtype == np.uint8
        points = renderer.landmarks(motion.astype(np.float32))
        assert points.shape == (68, 2) and np.isfinite(points).all()
    motion = extreme_motions()[5].astype(np.float32)
    assert np.array_equal(renderer.render(motion), renderer.render(motion))
