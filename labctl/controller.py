"""The controller's data path: bus → edge → spool → acknowledgement → listeners, plus the TSDB
sinks that drain the spool and the replies on ``_err``.

Order matters: a batch is acknowledged to the broker only after its points are fsync'd in the
spool, so neither a controller crash nor a TSDB outage loses a QoS 1 reading. Listeners (the
trial, the progress display) see a batch only after it is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from labctl.bus.edge import Edge, EdgeResult, Rejection, error_payload
from labctl.bus.mqtt import MqttBus
from labctl.metrics.drain_thread import ThreadedDrainer
from labctl.metrics.drainer import SpoolDrainer
from labctl.metrics.influx import InfluxEndpoint, InfluxWriter
from labctl.metrics.points import PointEncoder
from labctl.metrics.spool import OffsetStore, Spool, SpoolError, SpoolPosition
from labctl.protocol import topics

log = logging.getLogger(__name__)

Listener = Callable[[EdgeResult], None]


class ControllerFault(RuntimeError):
    """The data path cannot go on (e.g. the spool disk is full); the message says why."""


@dataclass
class ErrorReplies:
    """Rate-limited explanations to vendors on ``_err`` (a flood of bad messages must not
    become a flood of replies)."""

    per_device_per_s: float = 5.0
    burst: float = 20.0
    dropped: int = 0
    _buckets: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

    def allow(self, vendor: str, device: str, now: float) -> bool:
        """Take a token for one reply to ``vendor/device``."""
        tokens, last = self._buckets.get((vendor, device), (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.per_device_per_s)
        if tokens < 1:
            self._buckets[(vendor, device)] = (tokens, now)
            self.dropped += 1
            return False
        self._buckets[(vendor, device)] = (tokens - 1, now)
        if len(self._buckets) > 10_000:
            self._buckets.clear()
        return True


class Controller:
    """Runs the ingest loop, the sinks and the error replies inside a TaskGroup."""

    def __init__(
        self,
        bus: MqttBus,
        edge: Edge,
        spool: Spool,
        encoder: PointEncoder,
        endpoints: list[InfluxEndpoint],
        offsets: OffsetStore,
    ) -> None:
        self.bus, self.edge, self.spool, self.encoder = bus, edge, spool, encoder
        self.listeners: list[Listener] = []
        self.replies = ErrorReplies()
        self._err_queue: asyncio.Queue[Rejection] = asyncio.Queue(maxsize=1000)
        self.drainers = [
            ThreadedDrainer(SpoolDrainer(spool, offsets, InfluxWriter(ep), ep.name))
            for ep in endpoints
        ]
        self.last_batch_at = time.monotonic()
        self.fault: str | None = None
        self.run_counts: Counter[str] = Counter()
        """Readings spooled per run tag: counted where the tag is decided, so a run's
        record and its points in the spool and TSDB agree exactly."""
        self._stop_sinks = asyncio.Event()

    async def ingest(self) -> None:
        """Consume the bus until cancelled."""
        async for batch in self.bus.batches():
            result = self.edge.process(batch)
            await self._durable(result)
            self.bus.ack(batch)
            self.last_batch_at = time.monotonic()
            for rej in result.rejections:
                if rej.vendor and rej.device:
                    with contextlib.suppress(asyncio.QueueFull):
                        self._err_queue.put_nowait(rej)
            self._notify(result)

    async def accept_local(self, result: EdgeResult) -> None:
        """Take readings from a transport on this machine (serial port, camera): the same
        durable path as the bus — spooled first, then the listeners."""
        self.edge.counters.accepted_readings += len(result.readings)
        for r in result.rejections:
            self.edge.counters.rejected[r.reason] += 1
        await self._durable(result)
        self.last_batch_at = time.monotonic()
        self._notify(result)

    async def _durable(self, result: EdgeResult) -> None:
        now_ns = time.time_ns()
        last = None
        run = ""
        for r in result.readings:
            if r.device is not last:  # readings of one message share their DeviceRef
                last, run = r.device, self.encoder.run_of(r.device).run
            self.run_counts[run] += 1
        text = self.encoder.readings(result.readings)
        if result.rejections:
            text += self.encoder.rejections(result.rejections, now_ns)
        if result.detections:
            text += self.encoder.detections(result.detections)
        for p in result.presence:
            text += self.encoder.event(
                "presence",
                p.state,
                f"{p.device.key} {p.session}",
                now_ns,
                self.encoder.run_of(p.device),
            )
        if text:
            try:
                await asyncio.to_thread(self.spool.append, text.encode("utf-8"))
            except (OSError, SpoolError) as exc:
                # Not acknowledged: the broker keeps these messages for the next session.
                self.fault = f"cannot write the spool: {exc}"
                raise ControllerFault(self.fault) from exc
            for d in self.drainers:
                d.notify()

    def _notify(self, result: EdgeResult) -> None:
        for listener in self.listeners:
            listener(result)

    async def append_points(self, text: str) -> SpoolPosition:
        """Spool points the controller itself makes (events, verdicts)."""
        return await asyncio.to_thread(self.spool.append, text.encode("utf-8"))

    async def error_replies(self) -> None:
        """Publish rejections on ``_err`` until cancelled."""
        while True:
            rej = await self._err_queue.get()
            assert rej.vendor and rej.device
            now = time.time()
            if not self.replies.allow(rej.vendor, rej.device, now):
                continue
            try:
                await self.bus.publish(
                    topics.error(rej.vendor, rej.device),
                    error_payload(rej, now),
                    qos=1,
                    timeout_s=5,
                )
            except Exception as exc:  # a reply that cannot go out is not worth a fault
                log.info(
                    "could not publish an error reply to %s/%s: %s", rej.vendor, rej.device, exc
                )

    async def sinks(self) -> None:
        """Run every TSDB drainer (each on its own thread) until :meth:`stop_sinks`."""
        for d in self.drainers:
            d.start()
        try:
            await self._stop_sinks.wait()
        finally:
            await asyncio.gather(*(d.stop() for d in self.drainers))

    def stop_sinks(self) -> None:
        """Ask the drainers to stop after their current batch."""
        self._stop_sinks.set()

    async def quiet(self, quiet_s: float = 0.5, timeout_s: float = 10.0) -> None:
        """Wait until no batch has arrived for ``quiet_s`` (bounded by ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if time.monotonic() - self.last_batch_at >= quiet_s:
                return
            await asyncio.sleep(0.05)
