"""A renderer in its own process, so that drawing frames never waits for Python's GIL.

The renderers draw with many small numpy and OpenCV calls, and hold the GIL for most of a frame's 6.5 ms
between them. With three live sessions in one process, their render threads held the GIL 61% of the time
(py-spy ``--gil`` on ``bench/soak.py --sessions 3``), and every other thread (the event loop, voice
activity, the joint model) queued behind them, or they behind it: frames came late although the two cores
were only half busy. :class:`RenderProcess` runs the persona's renderer in a child process (one per
conversation) and is a :class:`~avatar_core.render.base.Renderer` itself: ``render`` sends the motion frame
(22 floats) over a socket and waits, without the GIL, for the image (H x W x 3 bytes). The child computes at
the priority of the thread that started it (a real-time one, not a compute worker: docs/design.md,
"Threads").

The child is ``python -m avatar_core.render.process FD``: it imports the renderer only (not the parent's
``__main__``, as multiprocessing's spawn would), gets the appearance over the socket, and ends when the
socket closes, so it never outlives its parent. A child that dies is started again on the next call, once.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import numpy.typing as npt

from avatar_core.config import AppearanceConfig
from avatar_core.render.base import Image, Points

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0  # importing numpy, OpenCV and the renderer, building its sprites
STOP_TIMEOUT_S = 2.0


class RenderProcessError(RuntimeError):
    """The render process could not start, or failed to draw a frame."""


class RenderProcess:
    """The renderer ``appearance`` asks for (:func:`~avatar_core.render.make_renderer`), in a child
    process. Thread-safe (one call at a time); :meth:`close` stops the child."""

    def __init__(
        self, appearance: AppearanceConfig, width: int | None = None, height: int | None = None
    ) -> None:
        self.appearance = appearance
        self.width = width or appearance.video.width
        self.height = height or appearance.video.height
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._closed = False
        with self._lock:
            self._start()

    @property
    def pid(self) -> int | None:
        """The child's process id (None once closed)."""
        return None if self._process is None else self._process.pid

    def render(self, motion: npt.NDArray[np.float32]) -> Image:
        """Motion frame (D,) -> RGB image (H, W, 3) uint8, drawn by the child."""
        frame = bytearray(self.height * self.width * 3)
        with self._lock:
            received = self._call(("render", np.asarray(motion, np.float32)), frame)
        if received != len(frame):
            raise RenderProcessError(
                f"the render process sent {received} bytes for a {len(frame)}-byte frame"
            )
        return np.frombuffer(frame, np.uint8).reshape(self.height, self.width, 3)

    def landmarks(self, motion: npt.NDArray[np.float32]) -> Points:
        """The 68 rig landmarks (68, 2) ``render`` would draw for this motion."""
        with self._lock:
            points = self._call(("landmarks", np.asarray(motion, np.float32)), None)
        return np.asarray(points, np.float32)

    def close(self) -> None:
        """Stop the child (it ends when its socket closes; killed if it does not within 2 s)."""
        with self._lock:
            self._closed = True
            self._stop()

    def _call(self, request: tuple[str, Any], frame: bytearray | None) -> Any:
        """Send ``request`` and return the reply: for a render the image's byte count, received into
        ``frame``; otherwise the object sent back. Restarts a dead child once."""
        if self._closed:
            raise RenderProcessError("the render process was closed")
        for attempt in (1, 2):
            try:
                assert self._conn is not None
                self._conn.send(request)
                received = 0 if frame is None else self._conn.recv_bytes_into(frame)
                if received:
                    return received
                ok, reply = self._conn.recv()  # a failed render sends no image, then its reason
                if not ok:
                    raise RenderProcessError(f"the render process failed: {reply}")
                return reply
            except (EOFError, OSError) as exc:
                code = self._process.poll() if self._process is not None else None
                if attempt == 2:
                    raise RenderProcessError(f"the render process died again (exit code {code})") from exc
                log.warning("the render process died (exit code %s); starting it again", code)
                self._stop()
                self._start()
        raise AssertionError("unreachable")

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        command = [sys.executable, "-m", "avatar_core.render.process", str(theirs.fileno())]
        try:
            self._process = subprocess.Popen(command, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send((self.appearance, self.width, self.height))
        if not self._conn.poll(START_TIMEOUT_S):
            self._stop()
            raise RenderProcessError(f"the render process did not start within {START_TIMEOUT_S:.0f} s")
        try:
            ok, reason = self._conn.recv()
        except EOFError:
            ok, reason = False, f"it exited with code {self._process.wait(STOP_TIMEOUT_S)}"
        if not ok:
            self._stop()
            raise RenderProcessError(f"the render process could not make the renderer: {reason}")

    def _stop(self) -> None:
        conn, self._conn = self._conn, None
        process, self._process = self._process, None
        if conn is not None:
            conn.close()
        if process is not None:
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serve(conn: Connection) -> int:
    """The child: make the renderer, then answer requests until the socket closes."""
    import cv2

    from avatar_core.render import make_renderer

    cv2.setNumThreads(1)  # one core's worth per conversation; several conversations use several
    try:
        appearance, width, height = conn.recv()
        renderer = make_renderer(appearance, width, height)
    except EOFError:
        return 0
    except Exception as exc:  # the parent raises it with this text
        conn.send((False, f"{type(exc).__name__}: {exc}"))
        return 1
    conn.send((True, None))
    while True:
        try:
            kind, motion = conn.recv()
        except (EOFError, OSError):
            return 0  # the parent closed the socket, or died
        try:
            if kind == "render":
                conn.send_bytes(np.ascontiguousarray(renderer.render(motion)).reshape(-1).data)
            else:
                conn.send((True, renderer.landmarks(motion)))
        except OSError:
            return 0  # the parent is gone
        except Exception as exc:
            log.exception("rendering failed")
            if kind == "render":
                conn.send_bytes(b"")
            conn.send((False, f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    sys.exit(serve(Connection(int(sys.argv[1]))))
