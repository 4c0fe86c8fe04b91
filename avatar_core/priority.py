"""Thread priorities: work that may wait yields the CPU to work that may not (docs/design.md, "Priorities").

A live session keeps a frame clock (a video frame every 40 ms, an audio frame every 20 ms) while it also
runs work that takes hundreds of milliseconds and can wait a little: Whisper, the end-of-turn model, the
joint model and Kokoro (which run far ahead of real time), the embedded LLM server. On a machine with
fewer cores than busy threads, the scheduler shares the CPU evenly unless told otherwise, and a frame
waits behind a transcription. Those background threads therefore run ``BACKGROUND_NICE`` steps below
the process's priority; the event loop and the render thread keep it. Lowering a priority needs no
privilege. Threads a lowered thread creates (CTranslate2's, llama.cpp's) inherit its priority.

On Linux the nice value belongs to each thread; elsewhere ``setpriority`` would renice the whole process,
so there threads are left as they are (processes, such as the LLM server, are lowered everywhere).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

BACKGROUND_NICE = 5  # CFS weight 335 against 1024: a frame thread gets 3/4 of a contended core


def lower_priority(pid: int = 0, increment: int = BACKGROUND_NICE) -> None:
    """Lower a process's (``pid``) or, by default, the calling thread's priority by ``increment`` nice
    steps (at most to 19). Failures are ignored: priorities are a hint, never a reason to stop."""
    if not hasattr(os, "setpriority"):
        return
    if pid == 0:
        if sys.platform != "linux":
            return
        pid = threading.get_native_id()  # Linux: a thread id addresses that thread alone
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, pid) + increment))


def background_pool(name: str) -> ThreadPoolExecutor:
    """A one-thread pool for work that may wait, running at background priority."""
    return ThreadPoolExecutor(1, thread_name_prefix=name, initializer=lower_priority)
