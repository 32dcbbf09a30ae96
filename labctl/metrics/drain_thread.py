"""A spool drainer on its own thread and event loop.

The ingest loop runs CPU-bound batches (validate, encode, spool); a drainer sharing that loop
only gets a turn between batches and falls behind until ingest pauses. Its own work is I/O —
reading spool files, sending HTTP — which releases the GIL, so on its own thread it drains
while ingest runs. The controller talks to it only through thread-safe calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from labctl.metrics.drainer import DrainerStatus, SpoolDrainer
from labctl.metrics.spool import SpoolPosition


class ThreadedDrainer:
    """Runs a :class:`SpoolDrainer` in a dedicated thread until :meth:`stop`."""

    def __init__(self, drainer: SpoolDrainer) -> None:
        self.drainer = drainer
        self.name = drainer.name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"drain-{self.name}", daemon=True)

    def _main(self) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self.drainer.run(self._stop)

        asyncio.run(run())

    def start(self) -> None:
        """Start draining."""
        self._thread.start()
        self._ready.wait(10)

    def notify(self) -> None:
        """The spool grew (thread-safe)."""
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                self._loop.call_soon_threadsafe(self.drainer.notify)

    def status(self) -> DrainerStatus:
        """Counters and the committed position (a snapshot)."""
        return self.drainer.status()

    async def drain_to(self, position: SpoolPosition, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until everything before ``position`` is committed; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            committed = self.drainer.status().committed
            if committed is not None and committed >= position:
                return True
            if time.monotonic() >= deadline or not self._thread.is_alive():
                return False
            self.notify()
            await asyncio.sleep(0.02)

    async def stop(self, timeout_s: float = 15.0) -> None:
        """Stop after the current batch and join the thread."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        await asyncio.to_thread(self._thread.join, timeout_s)
