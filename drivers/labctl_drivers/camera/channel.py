"""The hand-over from a capture thread to the event loop: a bounded queue of frames.

The thread never waits for the loop: it appends under a lock and schedules one wake-up
callback at most (further frames ride on the pending one), so a slow loop sees no flood of
callbacks. When the queue is full the thread either drops the oldest frame (counted) or,
for lossless reading of files, waits for room.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Ended:
    """The source ended cleanly (a file or folder was read to its end)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Failed:
    """The source failed; the message says why."""

    message: str


class ChannelClosed(Exception):
    """The consumer closed the channel."""


class FrameChannel(Generic[T]):
    """Single producer thread → single consumer task, bounded to ``capacity`` items."""

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int, drop_oldest: bool) -> None:
        self._loop = loop
        self._capacity = capacity
        self._drop_oldest = drop_oldest
        self._cond = threading.Condition()
        self._items: deque[T] = deque()
        self._end: str | None = None
        self._error: str | None = None
        self._closed = False
        self._wake = asyncio.Event()
        self._wake_pending = False
        self.dropped = 0

    # -- producer (capture thread) -------------------------------------------------------

    def put(self, item: T) -> bool:
        """Queue ``item``; False once the consumer closed the channel."""
        with self._cond:
            if not self._drop_oldest:
                while len(self._items) >= self._capacity and not self._closed:
                    self._cond.wait()
            if self._closed:
                return False
            if len(self._items) >= self._capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
        self._signal()
        return True

    def finish(self, reason: str) -> None:
        """The source ended cleanly; queued items are still delivered first."""
        with self._cond:
            if self._end is None and self._error is None:
                self._end = reason
        self._signal()

    def fail(self, message: str) -> None:
        """The source failed; queued items are still delivered, then the error is raised."""
        with self._cond:
            if self._end is None and self._error is None:
                self._error = message
        self._signal()

    def _signal(self) -> None:
        with self._cond:
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._on_wake)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            with self._cond:
                self._closed = True

    def _on_wake(self) -> None:
        with self._cond:
            self._wake_pending = False
        self._wake.set()

    # -- consumer (event loop) -----------------------------------------------------------

    async def get(self, timeout_s: float | None) -> T | Ended | Failed:
        """The next item; once the queue is empty, how the source ended. Raises ChannelClosed
        after :meth:`close` and TimeoutError when nothing arrives within ``timeout_s``."""
        while True:
            with self._cond:
                if self._closed:
                    raise ChannelClosed
                if self._items:
                    item = self._items.popleft()
                    self._cond.notify()
                    return item
                if self._error is not None:
                    return Failed(self._error)
                if self._end is not None:
                    return Ended(self._end)
                self._wake.clear()
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()

    def counts(self) -> tuple[int, int]:
        """Items waiting, items dropped so far."""
        with self._cond:
            return len(self._items), self.dropped

    def close(self) -> None:
        """Drop what is queued and release a producer waiting for room."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()
        self._wake.set()
