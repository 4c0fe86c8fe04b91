"""Rendering in a child process: the same frames as in-process, a dead child started again, clear
errors, and no child left behind."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_core.config import AppearanceConfig
from avatar_core.motion import NEUTRAL
from avatar_core.render import make_renderer
from avatar_core.render.process import RenderProcess, RenderProcessError

SIZE = 160


def motions(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [NEUTRAL + rng.normal(0, 0.2, NEUTRAL.shape).astype(np.float32) for _ in range(count)]


def test_the_child_draws_what_the_renderer_draws_in_process() -> None:
    appearance = AppearanceConfig()
    child = make_renderer(appearance, SIZE, SIZE, process=True)
    here = make_renderer(appearance, SIZE, SIZE)
    assert isinstance(child, RenderProcess) and (child.width, child.height) == (SIZE, SIZE)
    try:
        for motion in motions(4):
            frame = child.render(motion)
            assert frame.shape == (SIZE, SIZE, 3) and frame.dtype == np.uint8 and frame.flags.writeable
            assert np.array_equal(frame, here.render(motion))
            assert np.allclose(child.landmarks(motion), here.landmarks(motion))
    finally:
        child.close()


def test_a_dead_child_is_started_again_and_a_closed_one_is_an_error() -> None:
    child = RenderProcess(AppearanceConfig(), SIZE, SIZE)
    first = child._process
    assert first is not None
    first.kill()
    first.wait()
    assert child.render(NEUTRAL).shape == (SIZE, SIZE, 3)  # drawn by a new child
    assert child._process is not None and child._process is not first
    running = child._process
    child.close()
    assert running.returncode is not None  # the child ended with its socket
    with pytest.raises(RenderProcessError, match="closed"):
        child.render(NEUTRAL)


def test_a_renderer_the_child_cannot_make_fails_at_start_with_its_reason() -> None:
    broken = AppearanceConfig.model_construct(**{**AppearanceConfig().__dict__, "renderer": "portrait"})
    with pytest.raises(RenderProcessError, match="could not make the renderer"):
        RenderProcess(broken, SIZE, SIZE)
