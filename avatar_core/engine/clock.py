"""The output clock: when the Engine's next frame is due, in wall time or in no time at all."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Engine time in seconds since the first frame; ``realtime`` says whether waiting takes wall time."""

    realtime: bool

    def now(self) -> float:
        """Engine time now."""
        ...

    async def wait_until(self, t: float) -> None:
        """Return when engine time ``t`` has come."""
        ...


class RealClock:
    """Wall-clock pacing: frames come out when their timestamp is due."""

    realtime = True

    def __init__(self) -> None:
        self.origin: float | None = None

    def now(self) -> float:
        """Engine time in seconds since the first frame."""
        return 0.0 if self.origin is None else time.monotonic() - self.origin

    async def wait_until(self, t: float) -> None:
        """Sleep until engine time ``t``."""
        if self.origin is None:
            self.origin = time.monotonic() - t
        delay = t - self.now()
        if delay > 0:
            await asyncio.sleep(delay)


class VirtualClock:
    """No waiting: engine time is whatever frame is being produced (offline, deterministic)."""

    realtime = False

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        """Engine time of the frame being produced."""
        return self.t

    async def wait_until(self, t: float) -> None:
        """Advance instantly to ``t``."""
        self.t = t
