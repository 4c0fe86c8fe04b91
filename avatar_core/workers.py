"""Worker threads for blocking work, and the CPU priority each kind gets (docs/design.md, "Threads").

A live avatar does two kinds of blocking work. *Real-time* work has a deadline every frame: rendering
the next video frame, voice activity detection, the event loop itself. It is small (a few ms a frame)
but may never wait long. *Compute* (speech recognition, the LLM, synthesis, the turn models) is heavy and
bursty, and its delay only shows as a slower answer. When several sessions share a small machine, their
compute bursts at the ends of turns and would take the cores from the frame loops: video frames come
late, and the output has to skip ahead. So compute runs at a lower priority (a higher Linux nice value,
:data:`COMPUTE_NICENESS` above the process's): it gets every cycle the real-time work does not use, and
on an idle machine it is exactly as fast. A thread's priority passes to the threads it starts (torch's
and CTranslate2's own workers), so a model loaded and run on a compute worker computes at its priority.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger(__name__)

# Linux nice steps below the process for compute threads: CFS weights 1024 at the process's value
# against 110 ten steps lower, so a frame due now wins the core at once.
COMPUTE_NICENESS = 10
_MAX_NICE = 19


def lower_priority(tid: int | None = None, steps: int = COMPUTE_NICENESS) -> None:
    """Lower one thread's CPU priority by ``steps`` nice values (``tid``: a Linux thread id; default the
    calling thread). Linux only (elsewhere nice is per process, so nothing changes); a failure (a
    sandbox that forbids it) is logged, never raised: priority is an optimisation."""
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id() if tid is None else tid
    try:
        niceness = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(_MAX_NICE, niceness + steps))
    except OSError as exc:
        log.debug("could not lower the priority of thread %d: %s", tid, exc)


def lower_process_priority(pid: int, steps: int = COMPUTE_NICENESS) -> None:
    """Lower every thread of process ``pid`` (a model server the process started) by ``steps``; the
    threads it starts later inherit the lower priority."""
    tasks = Path(f"/proc/{pid}/task")
    try:
        tids = [int(task.name) for task in tasks.iterdir()] if tasks.is_dir() else [pid]
    except OSError:  # it exited meanwhile
        return
    for tid in tids:
        lower_priority(tid, steps)


def compute_pool(name: str, threads: int = 1) -> ThreadPoolExecutor:
    """An executor for compute (a model's inferences), one thread unless told, at compute priority."""
    return ThreadPoolExecutor(threads, thread_name_prefix=name, initializer=lower_priority)


def realtime_pool(name: str) -> ThreadPoolExecutor:
    """A one-thread executor for real-time work (a frame's rendering or perception), at the process's
    own priority."""
    return ThreadPoolExecutor(1, thread_name_prefix=name)


# The deadline of the work the calling thread does now (see :func:`due_in`).
_thread = threading.local()


@contextlib.contextmanager
def due_in(seconds: float) -> Iterator[None]:
    """The work the calling thread does inside is needed ``seconds`` from now: a :class:`DeadlineLock`
    it waits for serves it by that deadline (a reply's later chunk while earlier audio still plays, a
    listening block made ahead). Work outside any ``due_in`` is due at once."""
    previous = getattr(_thread, "deadline", None)
    _thread.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _thread.deadline = previous


def current_deadline() -> float:
    """The calling thread's deadline (``time.monotonic()`` seconds): now unless set by :func:`due_in`."""
    deadline: float | None = getattr(_thread, "deadline", None)
    return time.monotonic() if deadline is None else deadline


class DeadlineLock:
    """A lock granted earliest deadline first (docs/design.md, "Threads"): one model shared by several
    conversations serves the reply a person is waiting for before a chunk whose turn to play is seconds
    away. Not re-entrant; an inference in progress is never interrupted; equal deadlines go in arrival
    order."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._held = False
        self._waiting: list[tuple[float, int]] = []  # a heap of (deadline, arrival)
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        """Threads waiting for the lock now."""
        with self._changed:
            return len(self._waiting)

    @contextlib.contextmanager
    def hold(self, deadline: float | None = None) -> Iterator[None]:
        """Hold the lock once no waiter with an earlier ``deadline`` (default: the calling thread's,
        :func:`current_deadline`) is left."""
        key = (current_deadline() if deadline is None else deadline, next(self._arrivals))
        with self._changed:
            heapq.heappush(self._waiting, key)
            try:
                self._changed.wait_for(lambda: not self._held and self._waiting[0] == key)
            except BaseException:
                self._waiting.remove(key)
                heapq.heapify(self._waiting)
                self._changed.notify_all()
                raise
            heapq.heappop(self._waiting)
            self._held = True
        try:
            yield
        finally:
            with self._changed:
                self._held = False
                self._changed.notify_all()
