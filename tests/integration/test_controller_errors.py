"""Bad input through a real broker: every bad message is dropped, counted and explained to
its vendor on ``lab/v1/_err/…``, nothing reaches the spool, and the controller keeps going."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import paho.mqtt.client as paho
from labctl_drivers.mqtt_sensor import MqttSensorDriver
from paho.mqtt.enums import CallbackAPIVersion

from labctl.bus.broker import PrivateBroker
from labctl.bus.edge import Edge
from labctl.bus.mqtt import MqttBus
from labctl.controller import Controller
from labctl.metrics.points import PointEncoder, RunTags
from labctl.metrics.spool_link import SpoolLink
from labctl.protocol import topics
from labctl.rig.directory import DeviceDirectory

TS = 1_780_000_000.0
MANIFEST = {
    "schema": "labctl/1",
    "version": 1,
    "session": "s1",
    "device": {"vendor": "acme", "id": "s1", "model": "M", "serial": "1"},
    "channels": [{"name": "pm25", "unit": "µg/m³", "rate_hz": 1 / 60}],
}


def good(seq: int) -> bytes:
    return orjson.dumps({"session": "s1", "seq": seq, "ts": TS + seq, "v": {"pm25": 1.5}})


BAD: list[tuple[str, bytes, str]] = [
    ("lab/v1/acme/s1/telemetry/air", b"{oops", "json"),
    (
        "lab/v1/acme/s1/telemetry/air",
        b'{"session":"s1","seq":2,"ts":1780000000,"v":{"pm25":"high"}}',
        "schema",
    ),
    (
        "lab/v1/acme/s1/telemetry/air",
        b'{"session":"s1","seq":3,"ts":1780000000,"v":{"pm25":NaN}}',
        "schema",
    ),
    (
        "lab/v1/acme/s1/telemetry/air",
        b'{"session":"s1","seq":4,"ts":1780000000,"v":{"pm25":Infinity}}',
        "schema",
    ),
    (
        "lab/v1/acme/s1/telemetry/air",
        b'{"session":"s1","samples":[' + b" " * 300_000 + b"]}",
        "too_large",
    ),
    (
        "lab/v1/acme/s2/manifest",
        orjson.dumps({**MANIFEST, "device": {**MANIFEST["device"]}}),
        "identity",
    ),  # says acme/s1 on acme/s2's topic
    ("lab/v1/ghost/g1/telemetry/air", good(5), "unknown_device"),
    (
        "lab/v1/acme/s1/telemetry/air",
        orjson.dumps({"session": "s1", "seq": 6, "ts": 5.0, "v": {"pm25": 1.0}}),
        "schema",
    ),  # absurd ts
]


async def test_bad_input_is_explained_and_the_controller_keeps_running(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    errors: list[tuple[str, dict[str, object]]] = []
    watcher = paho.Client(CallbackAPIVersion.VERSION2, client_id="vendor-watch")
    watcher.on_message = lambda c, u, m: errors.append((m.topic, orjson.loads(m.payload)))
    watcher.connect(broker.host, broker.port)
    watcher.subscribe("lab/v1/_err/#", qos=1)
    watcher.loop_start()

    edge = Edge(DeviceDirectory(), MqttSensorDriver())
    bus = MqttBus(broker.host, broker.port, "ctl-errors", topics.DEVICE_SUBSCRIPTIONS)
    spool = SpoolLink(tmp_path / "spool", segment_bytes=64 * 1024 * 1024, endpoints=[])
    async with spool, bus:
        ctl = Controller(
            bus,
            edge,
            spool,
            PointEncoder("rig", lambda r: "dut", lambda r: RunTags("r1", "t")),
        )
        ingest = asyncio.create_task(ctl.ingest())
        replies = asyncio.create_task(ctl.error_replies())
        dev = paho.Client(CallbackAPIVersion.VERSION2, client_id="acme-s1")
        dev.connect(broker.host, broker.port)
        dev.loop_start()
        dev.publish(topics.manifest("acme", "s1"), orjson.dumps(MANIFEST), qos=1, retain=True)
        dev.publish("lab/v1/acme/s1/telemetry/air", good(1), qos=1).wait_for_publish(5)
        for topic, payload, _ in BAD:
            dev.publish(topic, payload, qos=1).wait_for_publish(5)
        dev.publish("lab/v1/acme/s1/telemetry/air", good(7), qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while (
            len(errors) < len(BAD) or edge.counters.accepted_readings < 2
        ) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not ingest.done(), "the ingest loop must survive bad input"
        ingest.cancel()
        replies.cancel()
        dev.loop_stop()
    watcher.loop_stop()

    reasons = sorted(e[1]["reason"] for e in errors)  # type: ignore[type-var]
    assert reasons == sorted(r for _, _, r in BAD)
    assert dict(edge.counters.rejected) == {
        r: sum(1 for _, _, x in BAD if x == r) for _, _, r in BAD
    }
    # explanations go to the offending device's own _err topic, in words
    by_reason = {e[1]["reason"]: e for e in errors}
    assert by_reason["unknown_device"][0] == "lab/v1/_err/ghost/g1"
    assert by_reason["identity"][0] == "lab/v1/_err/acme/s2"
    assert "acme/s1" in str(by_reason["identity"][1]["detail"])
    assert "limit" in str(by_reason["too_large"][1]["detail"])
    # only the two good readings became telemetry points; every rejection is a point too
    text = (tmp_path / "spool").joinpath("00000001.lp").read_text()
    telemetry = [line for line in text.splitlines() if line.startswith("telemetry,")]
    assert len(telemetry) == 2
    assert sum(1 for line in text.splitlines() if line.startswith("rejected,")) == len(BAD)
