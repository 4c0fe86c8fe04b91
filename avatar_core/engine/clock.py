"""The output clock: when the Engine's next frame is due, in wall time or in no time at all.

A live output that has fallen behind the wall clock (the process was starved of CPU) does not burst the
missed frames to catch up: the transport plays frames at real time, so a burst only fills its queues
(the latency grows) or shows a freeze followed by fast motion. Like the pacing of LiveKit's
``AVSynchronizer`` and Pipecat's output transport, a :class:`RealClock` more than ``max_lag_s`` behind
resumes at its present instead; the Engine skips the frames in between (video frames only: speech
continues where it stopped, no sample is lost) and counts them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

MAX_LAG_S = 0.2  # five video frames at 25 fps: later than this, a live output resumes at the present


class Clock(Protocol):
    """Engine time in seconds since the first frame; ``realtime`` says whether waiting takes wall time."""

    realtime: bool

    def now(self) -> float:
        """Engine time now."""
        ...

    def resume_at(self, t: float) -> float:
        """The engine time to produce next instead of ``t``: ``t``, or a later time when the output has
        fallen too far behind to catch up (the frames in between are skipped). Never earlier than ``t``."""
        ...

    async def wait_until(self, t: float) -> None:
        """Return when engine time ``t`` has come."""
        ...


class RealClock:
    """Wall-clock pacing: frames come out when their timestamp is due.

    ``monotonic`` (the time source, seconds) and ``sleep`` are injectable so that a test can stall
    the clock; ``max_lag_s`` is how far the output may fall behind before it resumes at the present.
    Engine time is ``monotonic() - origin`` and never goes back.
    """

    realtime = True

    def __init__(
        self,
        max_lag_s: float = MAX_LAG_S,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_lag_s <= 0:
            raise ValueError(f"RealClock max_lag_s must be positive (got {max_lag_s}): use e.g. {MAX_LAG_S}")
        self.max_lag_s = max_lag_s
        self.origin: float | None = None  # monotonic() at engine time 0
        self._time = monotonic
        self._sleep = sleep

    def now(self) -> float:
        """Engine time in seconds since the first frame."""
        return 0.0 if self.origin is None else self._time() - self.origin

    def lag(self, t: float) -> float:
        """How far the frame due at ``t`` is behind the clock, in seconds (negative: it is early)."""
        return 0.0 if self.origin is None else self.now() - t

    def resume_at(self, t: float) -> float:
        """``t``, or the present when the frame due at ``t`` is more than ``max_lag_s`` late."""
        return self.now() if self.lag(t) > self.max_lag_s else t

    async def wait_until(self, t: float) -> None:
        """Sleep until engine time ``t``."""
        if self.origin is None:
            self.origin = self._time() - t
        delay = t - self.now()
        if delay > 0:
            await self._sleep(delay)


class ManualTime:
    """A time source for :class:`RealClock` that moves only when the clock sleeps or when :meth:`stall`
    is called: the pacing of a live output, run deterministically (tests, simulations of a starved
    process). Use as ``RealClock(monotonic=manual, sleep=manual.sleep)``."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def __call__(self) -> float:
        """The current time in seconds."""
        return self.t

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass, and give the event loop one turn."""
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)

    def stall(self, seconds: float) -> None:
        """``seconds`` pass at once, as when the process gets no CPU."""
        if seconds < 0:
            raise ValueError(f"time cannot go back (stall of {seconds} s)")
        self.t += seconds


class VirtualClock:
    """No waiting: engine time is whatever frame is being produced (offline, deterministic)."""

    realtime = False

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        """Engine time of the frame being produced."""
        return self.t

    def resume_at(self, t: float) -> float:
        """``t``: a virtual clock is never behind."""
        return t

    async def wait_until(self, t: float) -> None:
        """Advance instantly to ``t``."""
        self.t = t
