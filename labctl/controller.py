"""The controller's data path: bus → edge → spool process → acknowledgement → listeners, and
the replies on ``_err``. The spool process formats the points, fsyncs them and drains them to
the TSDBs (:mod:`labctl.metrics.spool_link`).

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
from labctl.bus.mqtt import InboundMessage, MqttBus
from labctl.metrics.points import PointEncoder
from labctl.metrics.spool import SpoolError, SpoolPosition
from labctl.metrics.spool_link import SpoolLink
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


@dataclass(frozen=True, slots=True)
class _InFlight:
    """A batch whose points are on their way to the spool."""

    batch: list[InboundMessage]
    result: EdgeResult
    durable: asyncio.Future[SpoolPosition] | None


class Controller:
    """Runs the ingest loop and the error replies (inside a TaskGroup) over one spool process,
    which formats, fsyncs and drains the points to the TSDBs."""

    def __init__(
        self,
        bus: MqttBus,
        edge: Edge,
        spool: SpoolLink,
        encoder: PointEncoder,
        *,
        max_in_flight: int = 4,
    ) -> None:
        self.bus, self.edge, self.spool, self.encoder = bus, edge, spool, encoder
        self.listeners: list[Listener] = []
        self.replies = ErrorReplies()
        self._err_queue: asyncio.Queue[Rejection] = asyncio.Queue(maxsize=1000)
        self.drainers = spool.drainers
        self.max_in_flight = max_in_flight
        self.last_batch_at = time.monotonic()
        self.fault: str | None = None
        self.run_counts: Counter[str] = Counter()
        """Readings spooled per run tag: counted where the tag is decided, so a run's
        record and its points in the spool and TSDB agree exactly."""

    async def ingest(self) -> None:
        """Consume the bus until cancelled.

        Batches are pipelined: while the spool process writes one batch, the next is
        validated. Acknowledgements and listeners follow in arrival order, each only after
        its batch is fsync'd.
        """
        written: asyncio.Queue[_InFlight] = asyncio.Queue(maxsize=self.max_in_flight)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._acknowledge(written))
            async for batch in self.bus.batches():
                result = self.edge.process(batch)
                durable = self._send(result)
                await self.spool.drain()
                await written.put(_InFlight(batch, result, durable))

    async def _acknowledge(self, written: asyncio.Queue[_InFlight]) -> None:
        while True:
            item = await written.get()
            if item.durable is not None:
                await self._settle(item.durable)
            self.bus.ack(item.batch)
            self.last_batch_at = time.monotonic()
            for rej in item.result.rejections:
                if rej.vendor and rej.device:
                    with contextlib.suppress(asyncio.QueueFull):
                        self._err_queue.put_nowait(rej)
            self._notify(item.result)

    async def accept_local(self, result: EdgeResult) -> None:
        """Take readings from a transport on this machine (serial port, camera): the same
        durable path as the bus — spooled first, then the listeners."""
        self.edge.counters.accepted_readings += len(result.readings)
        for r in result.rejections:
            self.edge.counters.rejected[r.reason] += 1
        durable = self._send(result)
        if durable is not None:
            await self._settle(durable)
        self.last_batch_at = time.monotonic()
        self._notify(result)

    def _send(self, result: EdgeResult) -> asyncio.Future[SpoolPosition] | None:
        """Hand the batch's points to the spool process; None when there are none."""
        now_ns = time.time_ns()
        last = None
        run = ""
        for r in result.readings:
            if r.device is not last:  # readings of one message share their DeviceRef
                last, run = r.device, self.encoder.run_of(r.device).run
            self.run_counts[run] += 1
        block = self.encoder.pack(result.readings)
        text = ""
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
        if not block and not text:
            return None
        return self.spool.send_block(block, text.encode("utf-8"))

    async def _settle(self, durable: asyncio.Future[SpoolPosition]) -> None:
        try:
            await durable
        except (OSError, SpoolError) as exc:
            # Not acknowledged: the broker keeps these messages for the next session.
            self.fault = f"cannot write the spool: {exc}"
            raise ControllerFault(self.fault) from exc

    def _notify(self, result: EdgeResult) -> None:
        for listener in self.listeners:
            listener(result)

    async def append_points(self, text: str) -> SpoolPosition:
        """Spool points the controller itself makes (events, verdicts); the spool's end after
        them."""
        return await self.spool.append(text.encode("utf-8"))

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

    async def quiet(self, quiet_s: float = 0.5, timeout_s: float = 10.0) -> None:
        """Wait until no batch has arrived for ``quiet_s`` (bounded by ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if time.monotonic() - self.last_batch_at >= quiet_s:
                return
            await asyncio.sleep(0.05)
