"""The spool drainer: sends the spool to one TSDB endpoint, committing only what it accepted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from dataclasses import dataclass

from labctl.metrics.influx import (
    InfluxWriter,
    PermanentWriteError,
    TransientWriteError,
    WriteError,
)
from labctl.metrics.spool import OffsetStore, Spool, SpoolPosition

log = logging.getLogger(__name__)

# At most this many extra requests to narrow a refused batch down to its bad lines; past it the
# rest of the batch is rejected as a whole (a batch of nothing but bad lines stays cheap).
_MAX_SPLIT_REQUESTS = 64


@dataclass(frozen=True, slots=True)
class DrainerStatus:
    """A snapshot of one drainer's counters."""

    name: str
    committed: SpoolPosition | None  # None until the drainer first loaded its offset
    points_written: int
    batches: int
    retries: int
    rejected_batches: int
    rejected_points: int
    last_error: str | None


class SpoolDrainer:
    """Drains one spool into one endpoint, committing its position after each accepted batch.

    At most one batch is in memory. Spool and offset file I/O run in threads. Use :meth:`run`
    as a background task, or :meth:`drain_once` / :meth:`drain_to` directly.
    """

    def __init__(
        self,
        spool_reader: Spool,
        offsets: OffsetStore,
        writer: InfluxWriter,
        name: str,
        *,
        batch_bytes: int | None = None,
        depth: int = 2,
        poll_interval_s: float = 0.2,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
    ) -> None:
        self.spool = spool_reader
        self.offsets = offsets
        self.writer = writer
        self.name = name
        self.batch_bytes = batch_bytes or writer.endpoint.batch_bytes
        self.poll_interval_s = poll_interval_s
        self.depth = depth
        self._new_data = asyncio.Event()
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.rejected_dir = spool_reader.directory / "rejected"
        self._committed: SpoolPosition | None = None
        self._drain_lock = asyncio.Lock()  # one batch in flight, whoever drives the drainer
        self._progress = asyncio.Condition()
        self._running = False
        self._unsaved: SpoolPosition | None = None
        self._saver: asyncio.Task[None] | None = None
        self._points_written = 0
        self._batches = 0
        self._retries = 0
        self._rejected_batches = 0
        self._rejected_points = 0
        self._last_error: str | None = None

    def status(self) -> DrainerStatus:
        """Counters as they are now."""
        return DrainerStatus(
            name=self.name,
            committed=self._committed,
            points_written=self._points_written,
            batches=self._batches,
            retries=self._retries,
            rejected_batches=self._rejected_batches,
            rejected_points=self._rejected_points,
            last_error=self._last_error,
        )

    async def committed(self) -> SpoolPosition:
        """The position up to which the server has accepted everything."""
        if self._committed is None:
            self._committed = await asyncio.to_thread(self.offsets.load, self.name)
        return self._committed

    async def drain_once(self) -> int:
        """Send one batch from the committed position; return the points the server accepted.

        Returns 0 when there was nothing new. Raises :class:`TransientWriteError` (nothing
        committed; the same batch is sent next time) or a configuration
        :class:`PermanentWriteError` (401/403/404: nothing committed either).
        """
        async with self._drain_lock:
            start = await self.committed()
            data, end = await asyncio.to_thread(self.spool.read, start, self.batch_bytes)
            if not data:
                if end != start:  # stepped over the end of a segment
                    await self._commit(end)
                return 0
            written = await self._write_batch(data, start)
            self._batches += 1
            self._points_written += written
            await self._commit(end)
            return written

    async def drain_available(self) -> int:
        """Send everything there is, with up to ``depth`` batches in flight; return the points
        the server accepted (0: nothing new).

        The server works on one batch while the next is on its way, and positions are still
        committed in spool order: a batch's end only once it and every batch before it were
        accepted. A failure cancels the batches after it; they are sent again (harmless:
        same series and timestamps) from the committed position.
        """
        async with self._drain_lock:
            pos = await self.committed()
            inflight: deque[tuple[SpoolPosition, asyncio.Task[int]]] = deque()
            total = 0
            try:
                while True:
                    while len(inflight) < self.depth:
                        data, end = await asyncio.to_thread(self.spool.read, pos, self.batch_bytes)
                        if not data:
                            if end != pos and not inflight:  # stepped over a segment's end
                                await self._commit(end)
                            pos = end
                            break
                        inflight.append((end, asyncio.create_task(self._write_batch(data, pos))))
                        pos = end
                    if not inflight:
                        return total
                    end, task = inflight.popleft()
                    written = await task
                    self._batches += 1
                    self._points_written += written
                    total += written
                    await self._commit(end)
            finally:
                for _, task in inflight:
                    task.cancel()
                if inflight:
                    await asyncio.gather(*(t for _, t in inflight), return_exceptions=True)

    async def _write_batch(self, data: bytes, start: SpoolPosition) -> int:
        """Write ``data``; on a content refusal, narrow it down and reject only the bad lines."""
        try:
            await self.writer.write(data)
            return data.count(b"\n")
        except PermanentWriteError as exc:
            if exc.is_configuration:
                raise
            first = exc
        log.warning(
            "sink %s: %s; finding the refused lines of the batch at %s",
            self.name,
            first,
            start,
        )
        # Servers differ: InfluxDB 1.x keeps the good lines of a refused batch ("partial
        # write"), 2.x may not. Halve until the refused lines are alone; re-sending good lines
        # is harmless (same series and time overwrite), and costs a bounded number of requests.
        budget = [_MAX_SPLIT_REQUESTS]
        rejected: list[tuple[bytes, str]] = []
        written = await self._split(data, first, budget, rejected)
        bad = b"".join(chunk for chunk, _ in rejected)
        reasons = sorted({reason for _, reason in rejected})
        await asyncio.to_thread(self._record_rejected, start, bad, reasons)
        self._rejected_batches += 1
        self._rejected_points += bad.count(b"\n")
        self._last_error = (
            f"{self.writer.endpoint.describe()} refused {self._rejected_points} line(s) "
            f"so far; last: {reasons[0]}"
        )
        return written

    async def _split(
        self,
        data: bytes,
        error: PermanentWriteError,
        budget: list[int],
        rejected: list[tuple[bytes, str]],
    ) -> int:
        lines = data.count(b"\n")
        if lines <= 1 or budget[0] <= 0:
            rejected.append((data, error.reason))
            return 0
        mid = data.index(b"\n", len(data) // 2 - 1) + 1
        if mid >= len(data):  # the middle fell inside the last line: split before it instead
            mid = data.rindex(b"\n", 0, len(data) - 1) + 1
        written = 0
        for half in (data[:mid], data[mid:]):
            budget[0] -= 1
            try:
                await self.writer.write(half)
                written += half.count(b"\n")
            except PermanentWriteError as exc:
                if exc.is_configuration:
                    raise
                written += await self._split(half, exc, budget, rejected)
        return written

    def _record_rejected(self, start: SpoolPosition, lines: bytes, reasons: list[str]) -> None:
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        path = self.rejected_dir / f"{self.name}-{start.segment}-{start.offset}.lp"
        when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        header = [f"# refused by {self.writer.endpoint.describe()} at {when}"]
        # '#' lines are comments in line protocol: the file can be fixed and re-sent as it is.
        header += [f"# reason: {r}".replace("\n", " ") for r in reasons]
        with path.open("ab") as f:
            f.write(("\n".join(header) + "\n").encode())
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())
        log.error(
            "sink %s: %d line(s) refused by %s moved to %s: %s",
            self.name,
            lines.count(b"\n"),
            self.writer.endpoint.describe(),
            path,
            "; ".join(reasons),
        )

    async def _commit(self, pos: SpoolPosition) -> None:
        """The server has everything before ``pos``.

        Running in the background, the offset file is written behind the drain (latest
        position wins) so the next batch does not wait for two fsyncs; after a crash the
        file may be one batch behind, and re-sending a batch stores nothing twice (same
        series and timestamps). Driven directly, the file is written before returning.
        """
        self._committed = pos
        async with self._progress:
            self._progress.notify_all()
        if not self._running:
            await asyncio.to_thread(self.offsets.commit, self.name, pos)
            return
        self._unsaved = pos
        if self._saver is None or self._saver.done():
            self._saver = asyncio.create_task(self._save_offsets())

    async def _save_offsets(self) -> None:
        while self._unsaved is not None:
            pos, self._unsaved = self._unsaved, None
            try:
                await asyncio.to_thread(self.offsets.commit, self.name, pos)
            except OSError as exc:
                # The TSDB has the points; a stale offset file only means re-sending them.
                if self._unsaved is None:
                    self._unsaved = pos
                self._last_error = f"cannot record the drained position: {exc}"
                log.warning("sink %s: %s", self.name, self._last_error)
                return

    async def run(self, stop: asyncio.Event) -> None:
        """Drain until ``stop`` is set: poll for new data, back off 0.2 s → 10 s on failures."""
        self._running = True
        backoff = self.backoff_initial_s
        try:
            while not stop.is_set():
                try:
                    n = await self.drain_available()
                except TransientWriteError as exc:
                    self._note_failure(exc, backoff)
                    await _wait(stop, backoff)
                    backoff = min(backoff * 2, self.backoff_max_s)
                    continue
                except PermanentWriteError as exc:  # configuration: wait for someone to fix it
                    self._note_failure(exc, self.backoff_max_s)
                    await _wait(stop, self.backoff_max_s)
                    continue
                backoff = self.backoff_initial_s
                if n == 0:
                    # Sleep until the writer says there is more (or the poll interval passes).
                    self._new_data.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._new_data.wait(), self.poll_interval_s)
        finally:
            self._running = False
            if self._saver is not None:
                await self._saver  # the last position reaches the file before the loop ends

    def notify(self) -> None:
        """The spool grew: wake the drain loop now rather than at its next poll."""
        self._new_data.set()

    def _note_failure(self, exc: WriteError, delay: float) -> None:
        self._retries += 1
        self._last_error = str(exc)
        log.warning("sink %s: %s; retrying in %.1f s", self.name, exc, delay)

    async def drain_to(
        self,
        position: SpoolPosition,
        timeout: float,  # noqa: ASYNC109 - returns False rather than raising on expiry
    ) -> bool:
        """Wait until everything before ``position`` is committed; False on timeout.

        If :meth:`run` is not running, drives the drain itself (retrying with backoff).
        """
        deadline = time.monotonic() + timeout
        backoff = self.backoff_initial_s
        while True:
            if await self.committed() >= position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._running:
                async with self._progress:
                    # Re-check under the condition: a commit between the test above and here
                    # would otherwise cost a full wait.
                    if self._committed is not None and self._committed >= position:
                        return True
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._progress.wait(), min(remaining, 1.0))
                continue
            try:
                n = await self.drain_once()
            except WriteError as exc:
                self._note_failure(exc, backoff)
                await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            backoff = self.backoff_initial_s
            if n == 0 and await self.committed() < position:
                # Nothing more to read yet: the position is still being written.
                await asyncio.sleep(min(self.poll_interval_s, max(0.0, remaining)))


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
