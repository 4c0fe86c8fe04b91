"""Renderers: motion frames -> RGB video frames; :func:`make_renderer` picks one for a persona."""

from __future__ import annotations

from avatar_core.config import AppearanceConfig
from avatar_core.render.base import Renderer


def make_renderer(
    appearance: AppearanceConfig,
    width: int | None = None,
    height: int | None = None,
    *,
    process: bool = False,
) -> Renderer:
    """The renderer a persona's appearance asks for, at its video size unless given; with ``process``,
    drawing in a child process of its own (:class:`~avatar_core.render.process.RenderProcess`: for live
    sessions, whose frames must not wait for the GIL)."""
    if process:
        from avatar_core.render.process import RenderProcess

        return RenderProcess(appearance, width, height)
    w = width or appearance.video.width
    h = height or appearance.video.height
    if appearance.renderer == "portrait":
        from avatar_core.render.portrait import PortraitRenderer

        assert appearance.portrait is not None  # the config validator guarantees it
        portrait: Renderer = PortraitRenderer(appearance.portrait, w, h)
        return portrait
    from avatar_core.render.stylized import StylizedRenderer

    stylized: Renderer = StylizedRenderer(appearance.stylized, w, h)
    return stylized


def close_renderer(renderer: Renderer) -> None:
    """Stop what :func:`make_renderer` started for ``renderer`` (a render process; blocking)."""
    from avatar_core.render.process import RenderProcess

    if isinstance(renderer, RenderProcess):
        renderer.close()
