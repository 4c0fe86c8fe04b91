"""Writing a file so that no reader ever sees half of it (docs/design.md, "Faults")."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` to write the new file to: renamed over ``path`` when the block
    ends, removed when it raises. A reader sees the old file or the whole new one, never half of one.

    The temporary name is this writer's own (process and thread), so writers of the same file at the
    same time (two worker processes assembling one model into a fresh cache) do not rename each other's
    temporary file away; the last rename wins. ``suffix`` ends the temporary name: ``.npz`` for
    ``numpy.savez``, which appends it to any other name.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """``path.write_text(text)`` through :func:`replacing` (UTF-8)."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
