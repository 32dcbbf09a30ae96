"""The controller's MQTT bus: one paho-mqtt client on its own network thread, handing inbound
messages to the event loop in batches.

Why not aiomqtt here: the ingest path must outpace the devices' peak rate, and a plain paho
network loop moves about twice the messages of an aiomqtt one on these machines (DESIGN.md,
"Metrics"); aiomqtt also discards messages when its bounded queue is full — after the QoS 1
PUBACK has gone out — which is silent loss. This bus instead:

* acknowledges QoS 1 messages manually, only after the consumer says they are durable
  (spooled), so a crash between receipt and disk means redelivery, not loss;
* bounds memory with a semaphore of unacknowledged messages: when it is exhausted the network
  thread stops reading, TCP pushes back, and the broker queues (its queue limits are sized for
  it);
* uses a persistent session (fixed client id, clean start off, session expiry) so QoS 1
  messages published while the controller or the broker was away are delivered afterwards;
* reconnects by itself with backoff (paho's loop), re-subscribing on every connect.

The simulators and low-rate tools use aiomqtt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)


class BusError(RuntimeError):
    """The bus could not connect or publish; the message says why in words."""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message as it arrived, before any validation."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    generation: int
    """Connection it arrived on; acks from an older connection are not sent (the broker
    redelivers those messages, and dedupe drops the copies)."""
    received_ns: int


@dataclass(frozen=True)
class Will:
    """A Last Will: published by the broker if the client vanishes."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass
class BusStats:
    """Counters for progress display and benchmarks."""

    received: int = 0
    acked: int = 0
    published: int = 0
    connects: int = 0
    disconnects: int = 0
    last_disconnect_reason: str = ""
    backpressure_waits: int = 0


@dataclass
class _Pending:
    messages: list[InboundMessage] = field(default_factory=list)
    wake_scheduled: bool = False


class MqttBus:
    """An MQTT client for one controller. Use ``async with``."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        subscriptions: Sequence[str],
        *,
        username: str | None = None,
        password: str | None = None,
        will: Will | None = None,
        keepalive_s: int = 30,
        session_expiry_s: int = 86400,
        receive_maximum: int = 1000,
        max_unacked: int = 20_000,
        max_unacked_bytes: int = 64 * 1024 * 1024,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self.subscriptions = tuple(subscriptions)
        self.stats = BusStats()
        self._keepalive = keepalive_s
        self._session_expiry = session_expiry_s
        self._receive_maximum = receive_maximum
        self._connect_timeout = connect_timeout_s
        # Memory bound: unacknowledged messages by count and by bytes. When either is used up
        # the network thread waits, stops reading the socket, and TCP pushes back.
        self._max_unacked = max_unacked
        self._max_unacked_bytes = max_unacked_bytes
        self._budget = threading.Condition()
        self._unacked_n = 0
        self._unacked_bytes = 0
        self._lock = threading.RLock()
        self._pending = _Pending()
        self._generation = 0
        self._closing = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self._connected = asyncio.Event()
        self._connect_error: str | None = None
        self._publishes: dict[int, asyncio.Future[None]] = {}
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        if will is not None:
            self._client.will_set(will.topic, will.payload, will.qos, will.retain)
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._client.on_socket_open = _no_delay

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> MqttBus:
        self._loop = asyncio.get_running_loop()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._session_expiry
        props.ReceiveMaximum = self._receive_maximum
        self._client.connect_async(
            self.host, self.port, self._keepalive, clean_start=False, properties=props
        )
        self._client.loop_start()
        try:
            await asyncio.wait_for(self._connected.wait(), self._connect_timeout)
        except TimeoutError:
            await self._shutdown()
            why = self._connect_error or "no answer"
            raise BusError(
                f"cannot connect to the MQTT broker at {self.host}:{self.port} "
                f"within {self._connect_timeout:g} s ({why})"
            ) from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._closing.set()
        with self._budget:  # wake a network thread blocked on backpressure
            self._budget.notify_all()
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    @property
    def connected(self) -> bool:
        """True while the client holds a connection to the broker."""
        return self._connected.is_set()

    # -- inbound ---------------------------------------------------------------------------

    async def batches(
        self, max_batch: int = 5000, max_batch_bytes: int = 4 * 1024 * 1024
    ) -> AsyncIterator[list[InboundMessage]]:
        """Yield inbound messages in arrival order, in batches bounded by count and bytes."""
        while not self._closing.is_set():
            await self._ready.wait()
            with self._lock:
                msgs = self._pending.messages
                cut, size = 0, 0
                while cut < len(msgs) and cut < max_batch:
                    size += len(msgs[cut].payload)
                    cut += 1
                    if size >= max_batch_bytes:
                        break
                batch, self._pending.messages = msgs[:cut], msgs[cut:]
                if not self._pending.messages:
                    self._ready.clear()
                    self._pending.wake_scheduled = False
            if batch:
                yield batch

    def ack(self, messages: Sequence[InboundMessage]) -> None:
        """Acknowledge messages whose content is durable (or deliberately dropped)."""
        gen = self._generation
        size = 0
        for m in messages:
            if m.qos > 0 and m.generation == gen:
                self._client.ack(m.mid, m.qos)
            size += len(m.payload)
        with self._budget:
            self._unacked_n -= len(messages)
            self._unacked_bytes -= size
            self._budget.notify_all()
        self.stats.acked += len(messages)

    # -- outbound --------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: int | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        """Publish and, for QoS ≥ 1, wait for the broker's acknowledgement."""
        props = None
        if expiry_s is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.MessageExpiryInterval = expiry_s
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        # No lock of ours around paho's publish: paho calls on_publish holding its
        # out-message mutex, which its publish takes too, so a lock taken on both sides
        # deadlocks (it did, with a few hundred publishes in flight). `_publishes` is only
        # touched on the loop: the acknowledgement comes through `_published`, scheduled
        # after this synchronous block has registered the future.
        info = self._client.publish(topic, payload, qos, retain, props)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise BusError(f"cannot publish to {topic}: {paho.error_string(info.rc)}")
        if qos == 0 or info.is_published():
            fut.set_result(None)
        else:
            self._publishes[info.mid] = fut
        try:
            await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            raise BusError(
                f"broker did not acknowledge a publish to {topic} in {timeout_s:g} s"
            ) from None
        finally:
            if self._publishes.get(info.mid) is fut:
                del self._publishes[info.mid]
        self.stats.published += 1

    def _published(self, mid: int) -> None:
        """The broker acknowledged ``mid`` (on the loop, from :meth:`_on_publish`)."""
        fut = self._publishes.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    # -- paho callbacks (network thread) ---------------------------------------------------

    def _call(self, fn: object, *args: object) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)  # type: ignore[arg-type]

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._connect_error = str(reason)
            log.warning("broker refused the connection: %s", reason)
            return
        with self._lock:
            self._generation += 1
        self.stats.connects += 1
        if self.subscriptions:
            client.subscribe([(t, 1) for t in self.subscriptions])
        self._call(self._connected.set)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.stats.disconnects += 1
        self.stats.last_disconnect_reason = str(reason)
        if not self._closing.is_set():
            log.warning("lost the broker connection (%s); reconnecting", reason)
        self._call(self._connected.clear)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        # Backpressure: block the network thread (so TCP pushes back to the broker) rather than
        # buffer without bound.
        size = len(msg.payload)
        with self._budget:
            if self._over_budget(size):
                self.stats.backpressure_waits += 1
                while self._over_budget(size):
                    if self._closing.is_set():
                        return
                    self._budget.wait(0.5)
            self._unacked_n += 1
            self._unacked_bytes += size
        m = InboundMessage(
            msg.topic,
            bytes(msg.payload),
            msg.qos,
            bool(msg.retain),
            msg.mid,
            self._generation,
            time.time_ns(),
        )
        self.stats.received += 1
        with self._lock:
            self._pending.messages.append(m)
            if not self._pending.wake_scheduled:
                self._pending.wake_scheduled = True
                self._call(self._ready.set)

    def _over_budget(self, size: int) -> bool:
        # One message larger than the whole budget still passes when nothing else is held.
        return self._unacked_n > 0 and (
            self._unacked_n >= self._max_unacked
            or self._unacked_bytes + size > self._max_unacked_bytes
        )

    def _on_publish(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._call(self._published, mid)


def _no_delay(client: paho.Client, userdata: object, sock: paho.SocketLike) -> None:
    """Send small packets at once. With Nagle's algorithm a command request or a PUBACK waits
    behind any unacknowledged segment for the peer's delayed ACK (40 ms on Linux), which
    the lab would measure as the device's command latency."""
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
