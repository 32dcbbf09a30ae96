"""One simulated lamppost node on MQTT (``labctl/1``): presence, telemetry, commands, faults.

Like :class:`labctl_sim.device.SimDevice`, a node is a producer (samples on the device clock
into a store-and-forward buffer, each stamped with the session and seq current when it was
taken) and a connection loop (new session on every connect; subscriptions, then the retained
manifest, then retained ``online``; the Last Will is ``lost``; the buffer is pumped in batches
of one session and a batch leaves it only once the broker acknowledged it). On top of that:

Commands (``…/cmd/{id}/req`` → ``…/cmd/{id}/res``, docs/protocol.md §8)
    A valid request is answered ``accepted``, carried out after the node's latency (plus the
    command-delay fault) and answered ``succeeded`` with a result; bad parameters or an
    unknown operation get ``rejected`` with ``{code, message}``. A repeated id is never
    executed twice: its final answer is sent again (a copy of one still running is ignored);
    the node keeps the last :data:`REMEMBER` answers and answers older ids it still knows
    (the last :data:`SEEN` ids) ``rejected``/``duplicate``. Ids are kept across reboots
    (flash), so a retried command is not carried out again after a reboot either. Besides
    the lamppost operations the node has ``noop``, the lab's conformance operation.

Deadlines: two clocks
    The lab's ``deadline`` is wall-clock epoch seconds. The node compares it with *its own
    wall clock*, the real time plus the clock-skew fault, and silently ignores a request
    whose deadline has passed (counted as ``expired``); a node whose clock runs ahead
    therefore drops commands that are still valid, as a real one would. The accelerated
    device clock (``DeviceClock``) is not used for this: it stamps telemetry and drives the
    schedule, and under acceleration it is far from the lab's time by design. A response
    that is late (command-delay fault) is still sent: the lab must log it, not apply it.

Reboot
    ``reboot`` answers ``accepted`` and ``succeeded``, then the node stops sampling, delivers
    what it buffered, publishes ``offline`` and disconnects; it ignores requests from then
    on. After ``reboot_s`` (wall clock) it boots: energy register and ``noop`` runs at 0,
    manual override gone (stored schedule, else the initial level), and it connects with a
    new session whose seq starts at 0. A request sent during the reboot is never answered
    (the broker keeps no session for the node): the lab sees a timeout. A command still
    running when the reboot starts never gets its final answer.

Network faults
    An outage (scheduled or random, in device time) cuts the TCP connection without an MQTT
    DISCONNECT, so the broker publishes the Last Will ``lost``; the node stays away until the
    window ends, then reconnects with a new session. With store and forward it keeps the
    samples taken meanwhile (old session, continuing seq) and uploads them as batches; without
    it they are discarded. The message-loss fault never sends some samples (seq gaps).

Network conditions (:mod:`labctl_sim.lamppost.network`)
    Loss, delay and jitter the lab sets for the whole rig while it runs: a sample may be lost
    (seq gap) or held until its due time plus the delay; a final response may be lost; every
    response waits for the delay. They add to the node's own faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

import aiomqtt
import orjson
from pydantic import BaseModel, ValidationError

from labctl.protocol import topics
from labctl.protocol.payloads import (
    ChannelSpec,
    CommandError,
    CommandRequest,
    CommandResponse,
    DeviceIdentity,
    Manifest,
    State,
)
from labctl_sim.buffer import Buffered, SampleBuffer
from labctl_sim.device import DeviceClock, DeviceEvent, DeviceOptions, Endpoint, new_session
from labctl_sim.lamppost.commands import (
    NoopParams,
    Rejection,
    SetLevelParams,
    command_specs,
    validate,
)
from labctl_sim.lamppost.faults import FaultPlan
from labctl_sim.lamppost.model import CHANNEL_NAMES, CHANNELS, LamppostModel, NodeSamples
from labctl_sim.lamppost.network import NetworkLink, SharedConditions
from labctl_sim.lamppost.schedule import ScheduleParams
from labctl_sim.lamppost.spec import LamppostSpec
from labctl_sim.lamppost.stats import NodeStats
from labctl_sim.world import World

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
TELEMETRY_STREAM = "node"
REMEMBER = 256
"""Final answers a node keeps to answer a repeated id again."""
SEEN = 4096
"""Command ids a node keeps (answered ``duplicate`` once their answer is forgotten)."""
_PRODUCE_CHUNK = 4096
_MIN_NAP_S = 0.002
_MAX_NAP_S = 1.0
"""Longest producer sleep, so a stop is noticed within a second whatever the rate."""
_REBOOT_FLUSH_S = 2.0


@dataclass
class _Command:
    """What the node remembers of a command id."""

    attempts: int
    final: bytes | None = None
    """The final response, once there is one (None: still running)."""


class LamppostNode:
    """A simulated lamppost node; run it with :meth:`run` until ``stop`` is set."""

    def __init__(
        self,
        spec: LamppostSpec,
        world: World,
        clock: DeviceClock,
        endpoint: Endpoint,
        *,
        seed: int,
        span_s: float,
        options: DeviceOptions | None = None,
        on_event: Callable[[DeviceEvent], None] | None = None,
        conditions: SharedConditions | None = None,
    ) -> None:
        """``conditions``: the network conditions of the rig (None: a perfect link)."""
        self.spec = spec
        self.clock = clock
        self.endpoint = endpoint
        self.options = options or DeviceOptions()
        self.model = LamppostModel(spec, world, clock.start, seed)
        self.faults = FaultPlan(spec.faults, seed, spec.key, span_s)
        self.link = NetworkLink(conditions or SharedConditions(), seed, spec.key)
        self._response_release = 0.0
        """Loop time the last delayed response is due to leave (responses leave in order)."""
        self._response_tail: asyncio.Future[None] | None = None
        """Resolved once the last delayed response has gone."""
        self.stats = NodeStats()
        self._on_event = on_event or (lambda _e: None)
        self._buffer = SampleBuffer(self.options.capacity)
        self._session = new_session()
        self._seq = 0
        self._announced = False
        self._client: aiomqtt.Client | None = None
        self._powered = True
        self._rebooting = False
        self._cut: tuple[float, float] | None = None
        """The outage window that cut the current connection, until the loop waited it out."""
        self._wake = asyncio.Event()
        self._production_over = False
        self._until_reached = False
        self._done_reported = False
        self._deadline: float | None = None
        self._commands: OrderedDict[str, _Command] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._noop_runs = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._group: asyncio.TaskGroup | None = None
        self._stop: asyncio.Event | None = None
        v, d = spec.vendor, spec.id
        self._topic_manifest = topics.manifest(v, d)
        self._topic_state = topics.state(v, d)
        self._topic_telemetry = topics.telemetry(v, d, TELEMETRY_STREAM)
        self._topic_requests = f"{topics.device_root(v, d)}/cmd/+/req"
        self._until_count = (
            None
            if self.options.until_s is None
            else self.model.due(clock.start + self.options.until_s - 1e-9)
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
    def session(self) -> str:
        """The current session."""
        return self._session

    @property
    def buffered(self) -> int:
        """Samples waiting for the broker."""
        return len(self._buffer)

    def wall_clock(self) -> float:
        """The node's own real-time clock (epoch s): the lab's time plus the skew fault."""
        return time.time() + self.spec.faults.clock_skew_s

    # --- payloads ---------------------------------------------------------------------------

    def manifest(self, session: str) -> Manifest:
        """The node's self-description for ``session``."""
        s = self.spec
        return Manifest(
            schema_="labctl/1",
            version=MANIFEST_VERSION,
            session=session,
            device=DeviceIdentity(
                vendor=s.vendor, id=s.id, model=s.model, serial=s.serial,
                hw_version=s.hw_version, sw_version=s.sw_version,
            ),
            channels=[
                ChannelSpec(name=n, unit=u, type=t, rate_hz=s.rate_hz) for n, u, t in CHANNELS
            ],
            commands=command_specs(),
        )

    def _state(self, state: Literal["online", "offline", "lost"], session: str) -> bytes:
        ts = self.clock.now() + self.spec.faults.clock_skew_s
        return State(state=state, session=session, ts=ts).model_dump_json(by_alias=True).encode()

    @staticmethod
    def batch_payload(batch: list[Buffered]) -> bytes:
        """A ``TelemetryBatch`` of one session (orjson; a unit test holds it to the model)."""
        return orjson.dumps(
            {
                "session": batch[0].session,
                "samples": [
                    {"seq": b.seq, "ts": b.ts, "v": dict(zip(CHANNEL_NAMES, b.values, strict=True))}
                    for b in batch
                ],
            }
        )

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Produce, deliver and answer until ``stop`` is set; then flush, go offline, leave."""
        self._stop = stop
        async with asyncio.TaskGroup() as tg:
            self._group = tg
            producer = tg.create_task(self._produce(stop), name=f"{self.key} producer")
            conn = tg.create_task(self._connection_loop(), name=f"{self.key} connection")
            watcher = tg.create_task(self._watch_stop(stop, conn), name=f"{self.key} stop")
            await asyncio.wait([conn])
            watcher.cancel()
            producer.cancel()
            for task in list(self._tasks):
                task.cancel()
        self._group = None
        self.stats.unsent = len(self._buffer)

    async def _watch_stop(self, stop: asyncio.Event, conn: asyncio.Task[None]) -> None:
        await stop.wait()
        self._deadline = asyncio.get_running_loop().time() + self.options.flush_timeout_s
        self._wake.set()
        # Backstop for a connect or disconnect that hangs (see SimDevice._watch_stop).
        await asyncio.sleep(self.options.flush_timeout_s + 2 * self.options.backoff_max_s)
        log.warning("%s: shutdown overran the flush timeout; abandoning the connection", self.key)
        conn.cancel()

    def _stopping(self) -> bool:
        return self._deadline is not None

    def _remaining(self) -> float:
        if self._deadline is None:
            return math.inf
        return self._deadline - asyncio.get_running_loop().time()

    def _elapsed(self) -> float:
        """Device seconds since the rig started."""
        return self.clock.now() - self.clock.start

    # --- producer ---------------------------------------------------------------------------

    async def _produce(self, stop: asyncio.Event) -> None:
        model = self.model
        try:
            while not stop.is_set():
                due = model.due(self.clock.now())
                if self._until_count is not None:
                    due = min(due, self._until_count)
                if not self._powered:
                    model.skip_to(due)  # a node that is off takes no samples
                elif model.produced < due:
                    self._append(model.next(min(_PRODUCE_CHUNK, due - model.produced)))
                    self._wake.set()
                    if model.produced < due:
                        await asyncio.sleep(0)
                        continue
                if self._until_count is not None and model.produced >= self._until_count:
                    self._until_reached = True
                    return
                next_due = model.sample_time(model.produced)
                nap = self.clock.real_seconds(next_due - self.clock.now())
                await asyncio.sleep(min(_MAX_NAP_S, max(_MIN_NAP_S, nap)))
        finally:
            self._production_over = True
            self._wake.set()

    def _append(self, samples: NodeSamples) -> None:
        keep = self._client is not None or self.spec.faults.store_and_forward
        session = self._session
        for k, ts, row in zip(samples.k, samples.ts, samples.rows, strict=True):
            seq = self._seq
            self._seq += 1  # a sample that is never sent still uses its seq: the lab sees a gap
            if self.faults.lost(k):
                self.stats.lost += 1
            elif self.link.lost(k):
                self.stats.lost_network += 1
            elif not keep:
                self.stats.discarded_offline += 1
            elif not self._buffer.push(Buffered(k, session, seq, ts, tuple(row))):
                self.stats.dropped += 1
        self.stats.produced += len(samples)

    # --- connection -------------------------------------------------------------------------

    async def _connection_loop(self) -> None:
        delay = self.options.backoff_min_s
        while True:
            if self._rebooting:
                await self._reboot_cycle()
            # The window that cut the link is taken as is: a timer may fire a hair early.
            window, self._cut = self._cut or self.faults.outage_at(self._elapsed()), None
            if window is not None and not self._stopping():
                wait = self.clock.real_seconds(window[1] - self._elapsed())
                await self._sleep_unless_stopped(max(0.0, wait))
                continue
            try:
                await self._connection()
                delay = self.options.backoff_min_s
                if self._rebooting:
                    continue
                return
            except* (aiomqtt.MqttError, OSError) as group:
                reason = "; ".join(str(e) for e in group.exceptions)
                if self._cut is not None:
                    reason = f"network outage (fault): {reason}"
                    delay = 0.0
                self._on_event(DeviceEvent("disconnected", self.key, self._session, reason))
                log.info("%s: connection lost or refused (%s)", self.key, reason)
            if self._remaining() <= 0:
                log.warning(
                    "%s: broker unreachable at shutdown; %d samples unsent",
                    self.key, len(self._buffer),
                )
                return
            await asyncio.sleep(min(delay, self._remaining()))
            delay = min(max(delay * 2, self.options.backoff_min_s), self.options.backoff_max_s)

    async def _connection(self) -> None:
        session = new_session() if self._announced else self._session
        will = aiomqtt.Will(self._topic_state, self._state("lost", session), qos=1, retain=True)
        client = aiomqtt.Client(
            self.endpoint.host,
            self.endpoint.port,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=will,
            clean_start=True,  # no broker session: every connect starts afresh
            keepalive=self.options.keepalive_s,
            timeout=self.options.publish_timeout_s,
        )
        async with client:
            no_delay(client)
            if session != self._session:
                self._session, self._seq = session, 0
            self._announced = True
            self.stats.connects += 1
            # Subscribe before announcing: a lab that sees `online` may command at once.
            await client.subscribe(self._topic_requests, qos=1)
            await client.subscribe(topics.controller_state("+"), qos=1)
            manifest = self.manifest(session).model_dump_json(by_alias=True).encode()
            await client.publish(self._topic_manifest, manifest, qos=1, retain=True)
            await client.publish(
                self._topic_state, self._state("online", session), qos=1, retain=True
            )
            self._client = client
            self._on_event(DeviceEvent("online", self.key, session))
            try:
                async with asyncio.TaskGroup() as tg:
                    # The listener ends the task group when the broker goes away (aiomqtt
                    # raises on message iteration after a disconnect), cancelling the pump.
                    listener = tg.create_task(self._listen(client, manifest))
                    outage = tg.create_task(self._outage_watch(client))
                    await self._pump(client)
                    listener.cancel()
                    outage.cancel()
            finally:
                self._client = None
            await client.publish(
                self._topic_state,
                self._state("offline", session),
                qos=1,
                retain=True,
                timeout=max(0.5, min(self._remaining(), self.options.publish_timeout_s)),
            )
            self._on_event(DeviceEvent("offline", self.key, session))

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        if self._stop is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _outage_watch(self, client: aiomqtt.Client) -> None:
        window = self.faults.next_outage(self._elapsed())
        if window is None:
            return
        await asyncio.sleep(max(0.0, self.clock.real_seconds(window[0] - self._elapsed())))
        self._cut = window
        self.stats.outages += 1
        cut_connection(client)

    async def _pump(self, client: aiomqtt.Client) -> None:
        flush_until: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            if self._remaining() <= 0:
                return
            if self._rebooting:
                flush_until = flush_until or loop.time() + _REBOOT_FLUSH_S
                if not self._buffer or loop.time() >= flush_until:
                    return
            batch = self._buffer.front(self.options.batch)
            if batch and self.link.conditions.delaying:
                batch, wait = self._released(batch, time.monotonic())
                if not batch:
                    await asyncio.sleep(min(wait, max(0.0, self._remaining())))
                    continue
            if batch:
                timeout = min(self.options.publish_timeout_s, max(0.05, self._remaining()))
                await client.publish(
                    self._topic_telemetry, self.batch_payload(batch), qos=1, timeout=timeout
                )
                self._buffer.ack(batch[-1].k)  # acknowledged: only now may they leave
                self.stats.record_ack(batch)
                continue
            if self._production_over:
                if self._until_reached and not self._done_reported:
                    self._done_reported = True
                    detail = f"{self.stats.published} samples acknowledged"
                    self._on_event(DeviceEvent("done", self.key, self._session, detail))
                if self._stopping():
                    return
            self._wake.clear()
            await self._wake.wait()

    def _released(self, batch: list[Buffered], now: float) -> tuple[list[Buffered], float]:
        """The front of ``batch`` whose network delay is over, and how long until the next.

        A sample leaves at its due time (on the monotonic clock the device clock runs on)
        plus its delay, so a sample that waited in the buffer (an outage, a backlog) does not
        wait again, and samples pipeline like packets on a slow link.
        """
        clock, model = self.clock, self.model
        for i, b in enumerate(batch):
            due = clock.t0 + clock.real_seconds(model.sample_time(b.k) - clock.start)
            wait = due + self.link.telemetry_delay_s(b.k) - now
            if wait > 0:
                return batch[:i], wait
        return batch, 0.0

    async def _reboot_cycle(self) -> None:
        lost = len(self._buffer)
        if lost:
            self.stats.lost_reboot += lost
            self._buffer.ack(self.model.produced)  # RAM is gone
        await asyncio.sleep(self.spec.reboot_s)
        self.model.boot()
        self._noop_runs = 0
        # Commands the reboot cut short never finish; their ids stay known (a repeat is
        # answered `duplicate`), the rest of the memory is in flash and survives.
        for cid in [c for c, rec in self._commands.items() if rec.final is None]:
            del self._commands[cid]
        self._session, self._seq, self._announced = new_session(), 0, False
        self.stats.reboots += 1
        self._rebooting = False
        self._powered = True

    # --- inbound ----------------------------------------------------------------------------

    async def _listen(self, client: aiomqtt.Client, manifest: bytes) -> None:
        async for message in client.messages:
            payload = message.payload
            if not isinstance(payload, bytes | str):
                continue
            topic = message.topic.value
            if topic.endswith("/req"):
                self._on_request(topic, payload)
            elif not message.retain and _announces_online(payload):
                # A controller came up: it may have missed the retained manifest's update.
                await client.publish(self._topic_manifest, manifest, qos=1, retain=True)

    def _on_request(self, topic: str, payload: bytes | str) -> None:
        self.stats.requests += 1
        if self._rebooting:
            self.stats.ignored_rebooting += 1
            return
        topic_id = topic.split("/")[-2]
        try:
            req = CommandRequest.model_validate_json(payload)
        except ValidationError as exc:
            self._reject_now(topic_id, "bad_request", f"not a labctl/1 command request: {exc}")
            return
        if req.id != topic_id:
            self._reject_now(
                topic_id, "bad_request", f"payload id {req.id!r} differs from the topic's"
            )
            return
        if req.deadline < self.wall_clock():
            self.stats.expired += 1
            log.info("%s: ignored command %s: its deadline passed", self.key, req.id)
            return
        if req.id in self._seen:
            self.stats.duplicates += 1
            known = self._commands.get(req.id)
            if known is None:
                gone = _rejected(req.id, "duplicate", "this id was seen before; its answer is gone")
                self._background(self._respond(req.id, gone))
                return
            known.attempts += 1
            if known.final is None:
                return  # still running: its final answer will come
            if self.faults.drop_response(req.id, known.attempts):
                self.stats.responses_dropped += 1
                return
            self._background(self._respond(req.id, known.final, f"final-{known.attempts}"))
            return
        record = self._remember(req.id)
        try:
            params = validate(req.op, req.params)
        except Rejection as r:
            self.stats.rejected += 1
            record.final = _rejected(req.id, r.code, r.message)
            self._background(self._respond(req.id, record.final))
            return
        self._background(self._execute(req, params, record))

    def _reject_now(self, topic_id: str, code: str, message: str) -> None:
        self.stats.rejected += 1
        try:
            body = _rejected(topic_id, code, message)
        except ValidationError:
            return  # the topic's id is not a valid command id: nobody to answer
        self._background(self._respond(topic_id, body))

    def _remember(self, cid: str) -> _Command:
        record = self._commands[cid] = _Command(attempts=0)
        self._seen[cid] = None
        while len(self._commands) > REMEMBER:
            self._commands.popitem(last=False)
        while len(self._seen) > SEEN:
            self._seen.popitem(last=False)
        return record

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._group is None:
            coro.close()
            return
        task = self._group.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, req: CommandRequest, params: BaseModel, record: _Command) -> None:
        accepted = _response(req.id, "accepted")
        if self.link.conditions.delaying:  # in transit while the node carries it out
            self._background(self._respond(req.id, accepted, "accepted"))
        else:
            await self._respond(req.id, accepted, "accepted")
        delay = self.spec.command_latency_s + self.spec.faults.command_delay_s
        if isinstance(params, NoopParams):
            delay += params.delay_ms / 1000.0
        await asyncio.sleep(delay)
        if self._rebooting:
            return  # a reboot overtook it: the node never finishes it
        result = await self._apply(req.op, params)
        self.stats.executed += 1
        record.final = _response(req.id, "succeeded", result=result)
        if self.faults.drop_response(req.id, record.attempts):
            self.stats.responses_dropped += 1
        else:
            await self._respond(req.id, record.final, f"final-{record.attempts}")
        if req.op == "reboot":
            self._rebooting, self._powered = True, False
            self._wake.set()

    async def _apply(self, op: str, params: BaseModel) -> dict[str, Any]:
        model = self.model
        model.executed += 1
        now = self.clock.now()
        if isinstance(params, SetLevelParams):
            model.set_level(params.level)
            return {"level": params.level, "mode": model.mode}
        if isinstance(params, ScheduleParams):
            model.set_schedule(params)
            status = model.status(now)
            return {"mode": "schedule", "level": status["level"], **status["schedule"]}
        if op == "get_status":
            return {
                **model.status(now),
                "session": self._session,
                "seq": self._seq,
                "reboots": self.stats.reboots,
            }
        if isinstance(params, NoopParams):
            self._noop_runs += 1
            return {"runs": self._noop_runs}
        if op == "reboot":
            return {"reboot_s": self.spec.reboot_s}
        if op == "republish":
            client = self._client
            if client is not None:
                manifest = self.manifest(self._session).model_dump_json(by_alias=True).encode()
                await client.publish(self._topic_manifest, manifest, qos=1, retain=True)
                await client.publish(
                    self._topic_state, self._state("online", self._session), qos=1, retain=True
                )
            return {"session": self._session}
        raise AssertionError(f"validated operation {op!r} has no handler")

    async def _respond(self, cid: str, body: bytes, label: str = "reply") -> None:
        """Publish a response through the rig's network conditions; ``label`` says which
        answer to ``cid`` it is (``accepted``, ``final-{attempt}``), for the draws."""
        if label != "accepted" and self.link.drop_response(cid, label):
            self.stats.responses_dropped_network += 1
            return
        if not self.link.conditions.delaying:
            await self._publish_response(cid, body)
            return
        # Delayed: leave at now + delay, but never before the node's previous response (one
        # TCP connection delivers in order): wait for it to have gone, then go.
        loop = asyncio.get_running_loop()
        now = loop.time()
        release = max(now + self.link.response_delay_s(cid, label), self._response_release)
        self._response_release = release
        before, gone = self._response_tail, loop.create_future()
        self._response_tail = gone
        try:
            await asyncio.sleep(release - now)
            if before is not None and not before.done():
                await asyncio.wait({before})
            await self._publish_response(cid, body)
        finally:
            if not gone.done():
                gone.set_result(None)

    async def _publish_response(self, cid: str, body: bytes) -> None:
        client = self._client
        if client is None:
            self.stats.responses_lost += 1
            return
        try:
            await client.publish(
                topics.command_response(self.spec.vendor, self.spec.id, cid), body, qos=1
            )
        except aiomqtt.MqttError:
            self.stats.responses_lost += 1


def _response(
    cid: str,
    status: Literal["accepted", "succeeded", "failed", "rejected"],
    *,
    result: dict[str, Any] | None = None,
    error: CommandError | None = None,
) -> bytes:
    res = CommandResponse(id=cid, status=status, result=result, error=error)
    return res.model_dump_json(exclude_none=True).encode()


def _rejected(cid: str, code: str, message: str) -> bytes:
    return _response(cid, "rejected", error=CommandError(code=code, message=message[:1000]))


def _announces_online(payload: bytes | str) -> bool:
    try:
        announced = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return isinstance(announced, dict) and announced.get("state") == "online"


def no_delay(client: aiomqtt.Client) -> None:
    """Send small packets at once, as a node tuned for command latency does: with Nagle's
    algorithm an ``accepted`` waits behind the unacknowledged PUBACK of the request for the
    broker's delayed ACK (40 ms on Linux), which the lab would measure as command latency.
    aiomqtt has no option for it; the socket is its paho client's."""
    sock = client._client.socket()
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def cut_connection(client: aiomqtt.Client) -> None:
    """Drop the TCP connection without an MQTT DISCONNECT, as a failing network would.

    The broker then publishes the Last Will. aiomqtt has no public way to do this, so this
    shuts down the socket of its paho client; paho reports the lost connection and aiomqtt
    raises from the message iterator, ending the connection like a real outage.
    """
    sock = client._client.socket()
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
