"""Renderers: motion frames -> RGB video frames."""
