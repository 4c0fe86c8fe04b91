"""Worker threads: compute below the frame loops, real-time work at the process's priority (Linux)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from avatar_core.workers import (
    COMPUTE_NICENESS,
    DeadlineLock,
    compute_pool,
    current_deadline,
    due_in,
    lower_process_priority,
    realtime_pool,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")


def _niceness(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def _lowered(niceness: int) -> int:
    return min(19, niceness + COMPUTE_NICENESS)


def test_compute_threads_run_below_the_caller_and_realtime_threads_beside_it() -> None:
    ours = _niceness(threading.get_native_id())
    with compute_pool("test-compute") as pool:
        assert pool.submit(lambda: _niceness(threading.get_native_id())).result() == _lowered(ours)
    with realtime_pool("test-realtime") as pool:
        assert pool.submit(lambda: _niceness(threading.get_native_id())).result() == ours
    assert _niceness(threading.get_native_id()) == ours  # the caller keeps its own


def test_a_compute_thread_passes_its_priority_to_the_threads_it_starts() -> None:
    """What makes a model's own worker threads (torch's, CTranslate2's) compute at its priority."""
    ours = _niceness(threading.get_native_id())

    def start_one() -> int:
        seen: list[int] = []
        child = threading.Thread(target=lambda: seen.append(_niceness(threading.get_native_id())))
        child.start()
        child.join()
        return seen[0]

    with compute_pool("test-compute") as pool:
        assert pool.submit(start_one).result() == _lowered(ours)


def test_a_child_process_is_lowered_in_every_thread() -> None:
    script = (
        "import threading, time\nfor _ in range(3): threading.Thread(target=time.sleep, args=(30,)).start()\n"
    )
    script += "print('up', flush=True)\ntime.sleep(30)\n"
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        lower_process_priority(child.pid)
        tasks = list(Path(f"/proc/{child.pid}/task").iterdir())
        assert len(tasks) == 4
        ours = _niceness(0)
        assert {_niceness(int(task.name)) for task in tasks} == {_lowered(ours)}
    finally:
        child.kill()
        child.wait()


def test_a_deadline_lock_serves_the_earliest_deadline_not_the_longest_wait() -> None:
    lock = DeadlineLock()
    order: list[str] = []

    def take(name: str, due: float) -> None:
        with due_in(due), lock.hold():
            order.append(name)

    waiting = []
    with lock.hold():  # an inference in progress
        for name, due in (("listening block", 0.5), ("later chunk", 2.0), ("first chunk", 0.0)):
            thread = threading.Thread(target=take, args=(name, due))
            thread.start()
            waiting.append(thread)
            while lock.waiting < len(waiting):  # queued in this order
                time.sleep(0.001)
    for thread in waiting:
        thread.join(10)
    assert order == ["first chunk", "listening block", "later chunk"]
    with lock.hold():  # free again: nothing waits
        pass


def test_work_outside_due_in_is_due_now() -> None:
    before = time.monotonic()
    assert before <= current_deadline() <= time.monotonic()
    with due_in(3.0):
        assert current_deadline() >= before + 3.0
        with due_in(0.0):
            assert current_deadline() < before + 3.0
        assert current_deadline() >= before + 3.0
    assert current_deadline() <= time.monotonic()
