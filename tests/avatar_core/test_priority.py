"""Background threads run below the process's priority; the calling thread keeps its own."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from avatar_core.priority import BACKGROUND_NICE, background_pool, lower_priority

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")


def nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


@linux_only
def test_a_background_pool_runs_below_its_caller() -> None:
    caller = nice_of(threading.get_native_id())
    pool = background_pool("test-background")
    try:
        worker = pool.submit(lambda: nice_of(threading.get_native_id())).result()
    finally:
        pool.shutdown()
    assert worker == min(19, caller + BACKGROUND_NICE)
    assert nice_of(threading.get_native_id()) == caller  # the caller is untouched


@linux_only
def test_threads_started_by_a_background_thread_inherit_its_priority() -> None:
    pool = background_pool("test-background")

    def child_nice() -> int:
        seen: list[int] = []
        thread = threading.Thread(target=lambda: seen.append(nice_of(threading.get_native_id())))
        thread.start()
        thread.join()
        return seen[0]

    try:
        parent, child = (
            pool.submit(lambda: nice_of(threading.get_native_id())).result(),
            pool.submit(child_nice).result(),
        )
    finally:
        pool.shutdown()
    assert child == parent


def test_a_process_is_lowered() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        before = nice_of(process.pid)
        lower_priority(process.pid)
        assert nice_of(process.pid) == min(19, before + BACKGROUND_NICE)
    finally:
        process.kill()
        process.wait()


def test_a_process_that_is_gone_is_ignored() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    lower_priority(process.pid)  # no such process any more: nothing raised
