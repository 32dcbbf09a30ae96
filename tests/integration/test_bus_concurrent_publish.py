"""The controller's bus with hundreds of QoS 1 publishes in flight (e.g. a command to every
node of a 400-lamppost rig at once), through a real Mosquitto.

Regression: the bus once held its own lock around paho's ``publish`` while paho called
``on_publish`` holding its out-message mutex, and ``on_publish`` took the bus lock: with ~200
publishes in flight the two threads deadlocked and the controller's event loop froze for
good. The loop runs on a thread here so a deadlock fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from labctl.bus.broker import PrivateBroker
from labctl.bus.mqtt import MqttBus

pytestmark = pytest.mark.integration


def test_a_thousand_concurrent_publishes_all_complete(broker: PrivateBroker) -> None:
    result: dict[str, int] = {}

    async def publish_rounds() -> None:
        async with MqttBus(broker.host, broker.port, "t-concurrent", ["t/none"]) as bus:
            for _ in range(5):
                await asyncio.gather(
                    *(bus.publish(f"t/x/{i}", b"p" * 64, qos=1) for i in range(1000))
                )
            result["published"] = bus.stats.published
            result["waiting"] = len(bus._publishes)

    thread = threading.Thread(target=asyncio.run, args=(publish_rounds(),), daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "publishing froze (bus lock vs paho's mutex deadlock)"
    assert result == {"published": 5000, "waiting": 0}


async def test_the_bus_sends_small_packets_at_once(broker: PrivateBroker) -> None:
    """Nagle's algorithm off (TCP_NODELAY), or a command request waits behind unacknowledged
    PUBACKs for the broker's delayed ACK, and the lab measures 40 ms that are not the
    device's."""
    async with MqttBus(broker.host, broker.port, "t-nodelay", ["t/none"]) as bus:
        sock = bus._client.socket()
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    conf = (broker.directory / "mosquitto.conf").read_text().splitlines()
    assert "set_tcp_nodelay true" in conf  # and the broker's side of every connection
