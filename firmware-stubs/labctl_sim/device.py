"""One simulated device on MQTT: presence, manifest, and store-and-forward telemetry.

A device is two cooperating tasks:

* the *producer* takes samples on the (accelerated) device clock and appends them to the
  buffer, stamped with the current session and the next seq;
* the *connection loop* connects (new session each time), announces the manifest and
  ``online``, and pumps the buffer to the broker in batches of one session. A batch leaves the
  buffer only once the broker acknowledged it (QoS 1 PUBACK); after a disconnect the loop
  reconnects with backoff and re-sends what is still buffered, with the samples' original
  session and seq, so the controller's ``(session, seq)`` dedupe makes delivery exactly-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import aiomqtt
import orjson

from labctl.protocol import topics
from labctl.protocol.payloads import ChannelSpec, DeviceIdentity, Manifest, State, TelemetryBatch
from labctl_sim.buffer import Buffered, DeviceStats, SampleBuffer
from labctl_sim.models import CHANNELS, DeviceModel, DeviceSpec, Readings
from labctl_sim.world import World

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
TELEMETRY_STREAM = "air"
_PRODUCE_CHUNK = 4096
"""Samples generated per step before yielding to the loop (keeps the loop responsive)."""
_MIN_NAP_S = 0.002
"""Shortest producer sleep: at high speed many samples fall due per wake-up instead."""


@dataclass(frozen=True, slots=True)
class DeviceClock:
    """Accelerated time: ``start + (monotonic elapsed) × speed``, shared by a rig."""

    start: float
    speed: float
    t0: float

    @classmethod
    def starting_now(cls, start: float, speed: float) -> DeviceClock:
        """A clock that reads ``start`` now."""
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        return cls(start=start, speed=speed, t0=time.monotonic())

    def now(self) -> float:
        """Device time in epoch seconds."""
        return self.start + (time.monotonic() - self.t0) * self.speed

    def real_seconds(self, device_seconds: float) -> float:
        """Wall-clock seconds that ``device_seconds`` of device time take."""
        return device_seconds / self.speed


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the broker listens."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """Something a rig may want to tell its operator about."""

    kind: Literal["online", "disconnected", "done", "offline"]
    key: str
    session: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DeviceOptions:
    """Behaviour of a simulated device that is not part of its hardware spec."""

    batch: int = 60
    """Samples per telemetry message (at most; a batch never spans two sessions)."""
    until_s: float | None = None
    """Stop producing after this much device time (the device stays online)."""
    capacity: int = 1_000_000
    """Buffer bound in samples; beyond it new samples are discarded and counted."""
    backoff_min_s: float = 0.1
    backoff_max_s: float = 2.0
    flush_timeout_s: float = 10.0
    """On stop, how long to keep delivering what is buffered before giving up."""
    publish_timeout_s: float = 10.0
    keepalive_s: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.batch <= 10_000:
            raise ValueError(f"batch must be 1…10000 samples, got {self.batch}")
        if self.until_s is not None and self.until_s <= 0:
            raise ValueError(f"until must be positive, got {self.until_s}")


def new_session() -> str:
    """A fresh session id."""
    return uuid.uuid4().hex[:12]


class SimDevice:
    """A simulated device of a rig; run it with :meth:`run` until ``stop`` is set."""

    def __init__(
        self,
        spec: DeviceSpec,
        world: World,
        clock: DeviceClock,
        endpoint: Endpoint,
        options: DeviceOptions | None = None,
        on_event: Callable[[DeviceEvent], None] | None = None,
    ) -> None:
        self.spec = spec
        self.model = DeviceModel(spec, world, start=clock.start)
        self.clock = clock
        self.endpoint = endpoint
        self.options = options or DeviceOptions()
        self.stats = DeviceStats()
        self._on_event = on_event or (lambda _e: None)
        self._buffer = SampleBuffer(self.options.capacity)
        self._session = new_session()
        self._announced = False
        self._seq = 0
        self._wake = asyncio.Event()
        self._production_over = False
        self._until_reached = False
        self._done_reported = False
        self._deadline: float | None = None
        self._topic_manifest = topics.manifest(spec.vendor, spec.id)
        self._topic_state = topics.state(spec.vendor, spec.id)
        self._topic_telemetry = topics.telemetry(spec.vendor, spec.id, TELEMETRY_STREAM)
        self._until_count = (
            None
            if self.options.until_s is None
            else math.ceil(self.options.until_s / self.model.period - 1e-9)
        )

    @property
    def key(self) -> str:
        """``vendor/id``."""
        return self.spec.key

    @property
    def client_id(self) -> str:
        """The MQTT client id: ``sim-{vendor}-{device}``."""
        return f"sim-{self.spec.vendor}-{self.spec.id}"

    @property
    def buffered(self) -> int:
        """Samples waiting for the broker."""
        return len(self._buffer)

    # --- payloads -------------------------------------------------------------------------

    def manifest(self, session: str) -> Manifest:
        """The device's self-description for ``session``."""
        s = self.spec
        return Manifest(
            schema_="labctl/1",
            version=MANIFEST_VERSION,
            session=session,
            device=DeviceIdentity(
                vendor=s.vendor, id=s.id, model=s.model, serial=s.serial,
                hw_version=s.hw_version, sw_version=s.sw_version,
            ),
            channels=[ChannelSpec(name=n, unit=u, rate_hz=s.rate_hz) for n, u in CHANNELS],
        )

    def _state(self, state: Literal["online", "offline", "lost"], session: str) -> bytes:
        return State(state=state, session=session, ts=self.clock.now()).model_dump_json(
            by_alias=True
        ).encode()

    def _batch_payload(self, batch: list[Buffered]) -> bytes:
        names = [n for n, _ in CHANNELS]
        # Validating through the protocol model guarantees the controller will accept it.
        msg = TelemetryBatch.model_validate(
            {
                "session": batch[0].session,
                "samples": [
                    {"seq": b.seq, "ts": b.ts, "v": dict(zip(names, b.values, strict=True))}
                    for b in batch
                ],
            }
        )
        return msg.model_dump_json(by_alias=True).encode()

    # --- lifecycle ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Produce and deliver until ``stop`` is set; then flush (bounded), go offline, leave."""
        async with asyncio.TaskGroup() as tg:
            producer = tg.create_task(self._produce(stop), name=f"{self.key} producer")
            conn = tg.create_task(self._connection_loop(), name=f"{self.key} connection")
            watcher = tg.create_task(self._watch_stop(stop, conn), name=f"{self.key} stop")
            await asyncio.wait([conn])
            watcher.cancel()
            producer.cancel()
        self.stats.unsent = len(self._buffer)

    async def _watch_stop(self, stop: asyncio.Event, conn: asyncio.Task[None]) -> None:
        await stop.wait()
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self.options.flush_timeout_s
        self._wake.set()
        # The connection loop honours the deadline itself; this is the backstop for a connect
        # or disconnect that hangs (a broker that accepts TCP but never answers).
        await asyncio.sleep(self.options.flush_timeout_s + 2 * self.options.backoff_max_s)
        log.warning("%s: shutdown overran the flush timeout; abandoning the connection", self.key)
        conn.cancel()

    def _stopping(self) -> bool:
        return self._deadline is not None

    def _remaining(self) -> float:
        if self._deadline is None:
            return math.inf
        return self._deadline - asyncio.get_running_loop().time()

    # --- producer -------------------------------------------------------------------------

    async def _produce(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                due = int((self.clock.now() - self.clock.start) // self.model.period) + 1
                if self._until_count is not None:
                    due = min(due, self._until_count)
                while self.model.produced < due and not stop.is_set():
                    self._append(self.model.next(min(_PRODUCE_CHUNK, due - self.model.produced)))
                    self._wake.set()
                    await asyncio.sleep(0)
                if self._until_count is not None and self.model.produced >= self._until_count:
                    self._until_reached = True
                    return
                next_due = self.clock.start + self.model.produced * self.model.period
                nap = max(_MIN_NAP_S, self.clock.real_seconds(next_due - self.clock.now()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), nap)
        finally:
            self._production_over = True
            self._wake.set()

    def _append(self, readings: Readings) -> None:
        cols = zip(
            readings.k.tolist(), readings.ts.tolist(), readings.pm25.tolist(),
            readings.rh.tolist(), readings.temperature.tolist(), strict=True,
        )
        for k, ts, pm, rh, t in cols:
            seq = self._seq
            self._seq += 1  # a discarded sample still uses its seq: the controller sees a gap
            if not self._buffer.push(Buffered(k, self._session, seq, ts, (pm, rh, t))):
                self.stats.dropped += 1
        self.stats.produced += len(readings)

    # --- connection -----------------------------------------------------------------------

    async def _connection_loop(self) -> None:
        delay = self.options.backoff_min_s
        while True:
            try:
                await self._connection()
                return
            except* (aiomqtt.MqttError, OSError) as group:
                reason = "; ".join(str(e) for e in group.exceptions)
                self._on_event(DeviceEvent("disconnected", self.key, self._session, reason))
                log.info("%s: connection lost or refused (%s); retrying in %.1f s",
                         self.key, reason, delay)
            if self._remaining() <= 0:
                log.warning(
                    "%s: broker unreachable at shutdown; %d samples unsent, presence not updated",
                    self.key, len(self._buffer),
                )
                return
            await asyncio.sleep(min(delay, self._remaining()))
            delay = min(delay * 2, self.options.backoff_max_s)

    async def _connection(self) -> None:
        # A new session on every connect (the first uses the one its early samples carry).
        session = new_session() if self._announced else self._session
        will = aiomqtt.Will(
            self._topic_state, self._state("lost", session), qos=1, retain=True
        )
        client = aiomqtt.Client(
            self.endpoint.host,
            self.endpoint.port,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=will,
            clean_start=True,
            keepalive=self.options.keepalive_s,
            timeout=self.options.publish_timeout_s,
        )
        async with client:
            if session != self._session:
                self._session, self._seq = session, 0
            self._announced = True
            self.stats.connects += 1
            manifest = self.manifest(session).model_dump_json(by_alias=True).encode()
            await client.publish(self._topic_manifest, manifest, qos=1, retain=True)
            await client.publish(
                self._topic_state, self._state("online", session), qos=1, retain=True
            )
            await client.subscribe(topics.controller_state("+"), qos=1)
            self._on_event(DeviceEvent("online", self.key, session))
            async with asyncio.TaskGroup() as tg:
                # The listener ends the connection's task group when the broker goes away:
                # aiomqtt raises on message iteration after a disconnect, cancelling the pump.
                listener = tg.create_task(self._listen(client, manifest))
                await self._pump(client)
                listener.cancel()
            await client.publish(
                self._topic_state,
                self._state("offline", session),
                qos=1,
                retain=True,
                timeout=max(0.5, min(self._remaining(), self.options.publish_timeout_s)),
            )
            self._on_event(DeviceEvent("offline", self.key, session))

    async def _listen(self, client: aiomqtt.Client, manifest: bytes) -> None:
        async for message in client.messages:
            if message.retain:
                continue  # a controller that was already up: the manifest is fresh anyway
            if not isinstance(message.payload, bytes | str):
                continue
            try:
                announced = orjson.loads(message.payload)
            except orjson.JSONDecodeError:
                continue
            if isinstance(announced, dict) and announced.get("state") == "online":
                await client.publish(self._topic_manifest, manifest, qos=1, retain=True)

    async def _pump(self, client: aiomqtt.Client) -> None:
        while True:
            if self._remaining() <= 0:
                return
            batch = self._buffer.front(self.options.batch)
            if batch:
                timeout = min(self.options.publish_timeout_s, max(0.05, self._remaining()))
                await client.publish(
                    self._topic_telemetry, self._batch_payload(batch), qos=1, timeout=timeout
                )
                # Acknowledged by the broker: only now may the samples leave the buffer.
                self._buffer.ack(batch[-1].k)
                self.stats.record_ack(batch)
                continue
            if self._production_over:
                if self._until_reached and not self._done_reported:
                    self._done_reported = True
                    elapsed = time.monotonic() - self.clock.t0
                    detail = f"{self.stats.published} samples acknowledged in {elapsed:.2f} s"
                    self._on_event(DeviceEvent("done", self.key, self._session, detail))
                if self._stopping():
                    return
            self._wake.clear()
            await self._wake.wait()
