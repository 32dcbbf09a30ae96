"""A spool drainer on its own thread and event loop (in the spool process).

The spool process's main thread formats and appends batches; the drainers' work is I/O —
reading spool files, sending HTTP — which releases the GIL, so on their own threads they drain
while batches are written. The main thread talks to them only through thread-safe calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from labctl.metrics.drainer import DrainerStatus, SpoolDrainer


class ThreadedDrainer:
    """Runs a :class:`SpoolDrainer` in a dedicated thread until :meth:`stop_nowait`."""

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

    def stop_nowait(self) -> None:
        """Ask the drainer to stop after its current batch (thread-safe)."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)

    def join(self, timeout_s: float) -> None:
        """Wait for the thread to end (blocking)."""
        if self._thread.is_alive():
            self._thread.join(timeout_s)
