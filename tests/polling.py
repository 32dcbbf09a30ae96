"""Waiting in async tests for something the system under test does on its own time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_for(
    cond: Callable[[], bool], what: str, timeout: float = 8.0, every: float = 0.01
) -> None:
    """Poll ``cond`` every ``every`` s; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(every)
