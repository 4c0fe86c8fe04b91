"""The Session's clock: what time it is, and what a clock means for the work a chunk of input starts.

On a real clock the user's audio arrives in real time: recognition and the start of a reply run in the
background while more audio comes in, and a latency is the clock time at which something happened. Every
moment is read on the clock itself (``clock.now()``), never from a frame's timestamp: while the Engine's
output runs behind its clock, the frames carry earlier times than the wall clock at which they go out
(a reply's first audio is stamped when its frame is handed out, ``SpeechHandle.heard_at``).
On a virtual clock (recorded files, tests) no time passes while models compute: the work a chunk starts
is finished before the next chunk (so a run is deterministic), and a latency after the end of the turn
adds the wall time each stage really took.

The Engine's clocks (``avatar_core.engine.RealClock`` / ``VirtualClock``) pace the output; the Session
wraps the same clock with :func:`session_clock`, or is given one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


class EngineClock(Protocol):
    """What the Session reads from the Engine's clock."""

    @property
    def realtime(self) -> bool: ...

    def now(self) -> float: ...


@dataclass(frozen=True)
class Moment:
    """When something happened: ``t`` on the session clock (``clock.now()`` then, not a frame's
    timestamp) and ``wall`` on ``time.perf_counter()`` (either may be unknown)."""

    t: float | None
    wall: float | None

    @classmethod
    def now(cls, clock: SessionClock) -> Moment:
        """This moment on ``clock`` and on the wall."""
        return cls(clock.now(), time.perf_counter())


class SessionClock(Protocol):
    """Time for the Session (seconds on the Engine's clock)."""

    def now(self) -> float:
        """The current session time."""
        ...

    async def settle(self, work: Callable[[], Awaitable[object]]) -> None:
        """Wait for ``work`` (started by an input) if no time passes while it runs; else let it run."""
        ...

    def latency_ms(self, moment: Moment, end: float, end_detected: Moment) -> float | None:
        """Milliseconds from ``end`` (the end of the user's speech) until ``moment``; the end of the turn
        was detected at ``end_detected``. None if ``moment`` is unknown on this clock."""
        ...


def _ms(seconds: float) -> float:
    return round(1000 * seconds, 1)


class RealTime:
    """Inputs arrive in real time: work runs in the background; latencies are clock times."""

    def __init__(self, clock: EngineClock) -> None:
        self.clock = clock

    def now(self) -> float:
        """The Engine's clock."""
        return self.clock.now()

    async def settle(self, work: Callable[[], Awaitable[object]]) -> None:
        """Nothing to wait for: the work runs while more input arrives."""

    def latency_ms(self, moment: Moment, end: float, end_detected: Moment) -> float | None:
        """``moment.t - end``: both read on the clock, so this is the time the person waited."""
        return None if moment.t is None else _ms(moment.t - end)


class VirtualTime:
    """No time passes while models compute: work is awaited; latencies add its wall time."""

    def __init__(self, clock: EngineClock) -> None:
        self.clock = clock

    def now(self) -> float:
        """The Engine's clock (the time of the frame being produced)."""
        return self.clock.now()

    async def settle(self, work: Callable[[], Awaitable[object]]) -> None:
        """Wait for the work, so the next input sees its result."""
        await work()

    def latency_ms(self, moment: Moment, end: float, end_detected: Moment) -> float | None:
        """The detected end of the turn plus the wall time the stage took after it (work finished in
        the silence before it, by speculation, adds nothing)."""
        if moment.wall is None or end_detected.t is None or end_detected.wall is None:
            return None
        return _ms(end_detected.t - end) + max(0.0, 1000 * (moment.wall - end_detected.wall))


def session_clock(clock: EngineClock) -> SessionClock:
    """The session clock matching the Engine's: :class:`RealTime` or :class:`VirtualTime`."""
    return RealTime(clock) if clock.realtime else VirtualTime(clock)
