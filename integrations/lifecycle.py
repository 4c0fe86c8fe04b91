"""Lifecycles shared by every transport and command: stopping on signals, background tasks kept until
they end, closing a Session that may hang, and how many sessions to serve at once. Light on imports, so any
command can use it."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.session import Session
    from avatar_core.engine import Engine

log = logging.getLogger(__name__)

# Sessions one process serves at once by default: one per core. Measured with the joint voice on the 2-core
# machine (bench/sessions.py, bench/results/sessions.json): two sessions held 25 fps with no frame gap over
# 100 ms and voice to voice p95 0.94 s; three had frame gaps.
SESSIONS_PER_CORE = 1


def default_max_sessions() -> int:
    """How many sessions (browser tabs, kiosk sessions, worker rooms) to serve at once on this machine."""
    return max(1, SESSIONS_PER_CORE * (os.cpu_count() or 1))


# glibc's malloc gives threads that allocate at the same time their own arenas (up to 8 per core) and does
# not hand memory freed in one arena to a thread of another, so a process with a dozen busy threads (audio,
# video, Whisper, ONNX, torch) holds more and more freed memory. Two arenas, measured side by side in
# 15-minute soaks (bench/soak.py --trace-memory): RSS 69-76 MB lower, growing 12.0 instead of 18.5 MB in 10
# minutes, and the free memory malloc holds stops growing; latency and frame gaps unchanged.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt parameter, glibc's malloc.h


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Limit glibc's malloc arenas in this process and the processes it starts (LLM server, worker jobs).

    Call it first thing, before threads start: a thread keeps the arena it was given. A
    ``MALLOC_ARENA_MAX`` already in the environment is the user's choice and is left alone. Returns
    whether this call set the limit (False on a C library without ``mallopt``).
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    os.environ["MALLOC_ARENA_MAX"] = str(arenas)  # child processes read it when their malloc starts
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))


# numpy's and scipy's BLAS (OpenBLAS) splits a matrix product over one thread per core, and each of its
# threads then spins on its core for up to ~0.1 s waiting for the next product. Our products are small (the
# mel filters of Whisper's and Smart Turn's features) and every model already has its own thread, so at a
# pause that spinning took the core the LLM and the turn models needed (measured: docs/design.md, "Threads").
BLAS_THREADS = 1


def limit_blas_threads(threads: int = BLAS_THREADS) -> bool:
    """Run numpy's BLAS on ``threads`` threads in this process and the processes it starts (the renderer,
    LiveKit job processes). An ``OPENBLAS_NUM_THREADS`` already in the environment is the user's choice
    and is left alone. Returns whether this call set the limit."""
    if "OPENBLAS_NUM_THREADS" in os.environ:
        return False
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)  # child processes read it when they load BLAS
    from threadpoolctl import threadpool_limits  # this process's BLAS is loaded already (numpy)

    threadpool_limits(limits=threads, user_api="blas")
    return True


# CTranslate2 (Whisper's runtime) dispatches its own kernels (softmax, layer norm, activations, the int8
# quantisation around each matrix product) to AVX2 on a CPU that has AVX-512: it never picks AVX-512 itself
# (some CPUs lower their clock for it), only when ``CT2_FORCE_CPU_ISA`` asks. On this project's 2-core Xeon
# (avx512 with VNNI) a Whisper tiny.en call took 0.87 of the time, with the same words in 147 of 150 questions
# (bench/stt_isa.py; docs/design.md, "Threads"). The flags are the ones CTranslate2 checks before AVX512.
CT2_AVX512_FLAGS = frozenset({"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"})


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (/proc/cpuinfo); empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def select_ctranslate2_isa(flags: frozenset[str] | None = None) -> bool:
    """Let CTranslate2 use its AVX-512 kernels where the CPU has them, in this process and the processes it
    starts. Call it before Whisper loads (CTranslate2 reads the setting once). A ``CT2_FORCE_CPU_ISA``
    already in the environment is the user's choice and is left alone. Returns whether this call set it."""
    if "CT2_FORCE_CPU_ISA" in os.environ:
        return False
    if not (cpu_flags() if flags is None else flags) >= CT2_AVX512_FLAGS:
        return False
    os.environ["CT2_FORCE_CPU_ISA"] = "AVX512"
    return True


def prepare_process() -> None:
    """What `dyad` sets first thing, before threads start: the malloc arena cap, the BLAS threads and
    CTranslate2's instruction set."""
    cap_malloc_arenas()
    limit_blas_threads()
    select_ctranslate2_isa()


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# ---------------------------------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def on_stop_signals(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` on SIGINT/SIGTERM while inside (on the running loop; a nested use takes over
    until it exits). Where signals cannot be handled (not the main thread, Windows) nothing is set."""
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, callback)
    try:
        yield
    finally:
        for signum in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)


# ---------------------------------------------------------------------------------------------------
# Tasks and closing
# ---------------------------------------------------------------------------------------------------


class TaskSet:
    """Background tasks kept until they end (nothing fire-and-forget); a failure is logged."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coro`` as a task named ``PREFIX-NAME``."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.prefix}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def cancel_all(self) -> None:
        """Cancel every task (except the caller's own) and wait for them."""
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def close_session(session: Session, engine: Engine, limit_s: float = 30.0) -> None:
    """Close ``session``, interrupting speech meanwhile; give up after ``limit_s`` (a library that
    swallows cancellation must never hold a transport open)."""
    closing = asyncio.ensure_future(session.aclose())
    deadline = time.monotonic() + limit_s
    while not closing.done() and time.monotonic() < deadline:
        engine.interrupt()
        await asyncio.wait({closing}, timeout=0.05)
    if not closing.done():
        log.warning("the session did not close in %.0f s", limit_s)
        closing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await closing
