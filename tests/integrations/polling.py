"""Waiting for a condition in async tests: generous deadlines, never a timing assertion."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


def waiter(timeout_s: float, poll_s: float = 0.05) -> Callable[[Callable[[], bool], str], Awaitable[None]]:
    """An ``until(condition, what)`` that polls every ``poll_s`` and fails after ``timeout_s``."""

    async def until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(poll_s)

    return until
