"""The drainer keeps two batches in flight but commits in spool order (fake server)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from labctl.metrics.drainer import SpoolDrainer
from labctl.metrics.influx import InfluxEndpoint, TransientWriteError
from labctl.metrics.spool import OffsetStore, Spool, SpoolPosition


class FlakyServer:
    """Answers after a random delay (so later batches can finish first); fails call ``fail_at``."""

    def __init__(self, fail_at: int) -> None:
        self.endpoint = InfluxEndpoint(name="fake", url="http://fake:1", database="d")
        self.calls = 0
        self.fail_at = fail_at
        self.stored: set[bytes] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.rng = random.Random(7)

    async def write(self, body: bytes) -> None:
        self.calls += 1
        call = self.calls
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.rng.uniform(0, 0.01))
            if call == self.fail_at:
                raise TransientWriteError("fake server: 503")
            self.stored.update(body.splitlines())
        finally:
            self.in_flight -= 1


async def test_pipelined_drain_commits_in_order_and_loses_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=4000)
    lines = [f"m,d=x f={i}i {i}\n".encode() for i in range(600)]
    for k in range(0, 600, 50):
        spool.append(b"".join(lines[k : k + 50]))
    end = spool.position()
    server = FlakyServer(fail_at=4)
    offsets = OffsetStore(tmp_path / "offsets")
    drainer = SpoolDrainer(
        spool, offsets, server, "fake", batch_bytes=700, backoff_initial_s=0.01  # type: ignore[arg-type]
    )
    committed: list[SpoolPosition] = []
    real_commit = drainer._commit

    async def watch(pos: SpoolPosition) -> None:
        committed.append(pos)
        await real_commit(pos)

    drainer._commit = watch  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(drainer.run(stop))
    assert await drainer.drain_to(end, 10)
    stop.set()
    await task
    assert server.max_in_flight == 2
    assert committed == sorted(committed) and committed[-1] == end
    assert server.stored == {line.rstrip(b"\n") for line in lines}  # every line, once or twice
    st = drainer.status()
    assert st.retries == 1 and "503" in (st.last_error or "")
    assert offsets.load("fake") == end  # the offset file caught up before run() returned
    spool.close()
