"""The controller's bus against a real Mosquitto: QoS 1 messages are never lost — not when the
controller goes away before acknowledging, not when the broker restarts."""

from __future__ import annotations

import asyncio
import contextlib
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from labctl.bus.broker import PrivateBroker
from labctl.bus.mqtt import BusError, InboundMessage, MqttBus

TOPIC = "lab/v1/acme/s1/telemetry/air"


def publisher(b: PrivateBroker) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-pub", protocol=paho.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    # A persistent session, so in-flight QoS 1 publishes are resent after a broker restart.
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect(b.host, b.port, clean_start=False, properties=props)
    c.loop_start()
    return c


def publish_all(c: paho.Client, start: int, n: int) -> None:
    infos = [c.publish(TOPIC, str(i).encode(), qos=1) for i in range(start, start + n)]
    for info in infos:
        info.wait_for_publish(10)
        # wait_for_publish returns silently on timeout; the broker must really have it.
        assert info.is_published(), "broker did not acknowledge a publish"


async def collect(
    bus: MqttBus, want: int, timeout: float, ack: bool = True
) -> list[InboundMessage]:
    got: list[InboundMessage] = []

    async def run() -> None:
        async for batch in bus.batches():
            got.extend(batch)
            if ack:
                bus.ack(batch)
            if len({m.payload for m in got}) >= want:
                return

    await asyncio.wait_for(run(), timeout)
    return got


def make_bus(b: PrivateBroker, client_id: str = "ctl-test") -> MqttBus:
    return MqttBus(b.host, b.port, client_id, [TOPIC], connect_timeout_s=5)


async def test_receives_every_qos1_message(broker: PrivateBroker) -> None:
    async with make_bus(broker) as bus:
        pub = publisher(broker)
        await asyncio.to_thread(publish_all, pub, 0, 5000)
        got = await collect(bus, 5000, 20)
        pub.loop_stop()
    assert {int(m.payload) for m in got} == set(range(5000))


async def test_unacknowledged_messages_are_redelivered(broker: PrivateBroker) -> None:
    async with make_bus(broker) as bus:
        pub = publisher(broker)
        await asyncio.to_thread(publish_all, pub, 0, 200)
        first = await collect(bus, 200, 10, ack=False)  # e.g. the spool write failed
    assert len({m.payload for m in first}) == 200
    # A new controller process with the same identity gets them again.
    async with make_bus(broker) as bus:
        again = await collect(bus, 200, 10)
    pub.loop_stop()
    assert {int(m.payload) for m in again} == set(range(200))


async def test_broker_restart_loses_nothing(broker: PrivateBroker) -> None:
    async with make_bus(broker) as bus:
        pub = publisher(broker)
        got: list[InboundMessage] = []
        slow = asyncio.Event()

        async def consume() -> None:
            async for batch in bus.batches():
                got.extend(batch)
                if not slow.is_set():
                    await asyncio.sleep(0.01)  # keep a backlog in the broker
                bus.ack(batch)

        task = asyncio.create_task(consume())
        await asyncio.to_thread(publish_all, pub, 0, 3000)
        await asyncio.to_thread(broker.stop)  # SIGTERM: mosquitto saves its sessions
        await asyncio.sleep(0.5)
        await asyncio.to_thread(broker.start)
        deadline = time.monotonic() + 20
        while not bus.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        slow.set()
        # the publisher reconnects by itself; publish more after the restart
        while not pub.is_connected() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.to_thread(publish_all, pub, 3000, 1000)
        while len({m.payload for m in got}) < 4000 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        task.cancel()
        pub.loop_stop()
    assert bus.stats.disconnects >= 1
    assert {int(m.payload) for m in got} == set(range(4000))


async def test_unreachable_broker_is_a_clear_error() -> None:
    from labctl.bus.broker import free_port

    bus = MqttBus("127.0.0.1", free_port(), "x", [], connect_timeout_s=1.5)
    with pytest.raises(BusError, match=r"cannot connect to the MQTT broker at 127\.0\.0\.1"):
        await bus.__aenter__()


async def test_unacknowledged_bytes_are_bounded(broker: PrivateBroker) -> None:
    bus = MqttBus(broker.host, broker.port, "ctl-budget", [TOPIC], max_unacked_bytes=1_000_000)
    async with bus:
        pub = publisher(broker)
        infos = [pub.publish(TOPIC, b"%06d" % i + b"x" * 100_000, qos=1) for i in range(60)]
        held: list[InboundMessage] = []

        async def take(until: float) -> None:
            async for batch in bus.batches():
                held.extend(batch)  # not acknowledged: not yet durable
                if time.monotonic() > until:
                    return

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(take(time.monotonic() + 30), 2.0)
        # ~1 MB of 100 kB messages may be held, never the 6 MB sent
        assert 1 <= len(held) <= 11, len(held)
        assert bus.stats.backpressure_waits >= 1
        bus.ack(held)
        rest = await collect(bus, 60 - len(held), 20)
        assert len(held) + len(rest) >= 60
        for info in infos:
            info.wait_for_publish(5)
        pub.loop_stop()
