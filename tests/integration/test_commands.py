"""Commands through a real broker: correlation, idempotency on id, deadlines, late responses."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from labctl.bus.broker import PrivateBroker
from labctl.config import load_settings
from labctl.readings import DeviceRef
from labctl.rig.reservations import Reservations
from labctl.rig.runtime import open_runtime

DEV = DeviceRef("acme", "lamp1")


class FakeDevice:
    """Answers ``lab/v1/acme/lamp1/cmd/+/req``: accepted, then the final status after a delay."""

    def __init__(self, broker: PrivateBroker, v5: bool = True) -> None:
        self.requests: list[dict[str, object]] = []
        self.expiry: list[int | None] = []
        self.c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id="acme-lamp1",
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        )
        self.c.on_message = self._on
        self.c.connect(broker.host, broker.port)
        self.c.subscribe("lab/v1/acme/lamp1/cmd/+/req", qos=1)
        self.c.loop_start()

    def _on(self, c: paho.Client, u: object, m: paho.MQTTMessage) -> None:
        req = orjson.loads(m.payload)
        self.requests.append(req)
        props = getattr(m, "properties", None)
        self.expiry.append(getattr(props, "MessageExpiryInterval", None))
        cid, params = req["id"], req["params"]
        topic = f"lab/v1/acme/lamp1/cmd/{cid}/res"

        def answer() -> None:
            if req["op"] == "bogus":
                c.publish(
                    topic,
                    orjson.dumps(
                        {
                            "id": cid,
                            "status": "rejected",
                            "error": {"code": "unknown_op", "message": "no such op"},
                        }
                    ),
                    qos=1,
                )
                return
            c.publish(topic, orjson.dumps({"id": cid, "status": "accepted"}), qos=1)
            time.sleep(float(params.get("delay_s", 0)))
            status = "failed" if params.get("fail") else "succeeded"
            body: dict[str, object] = {"id": cid, "status": status}
            if status == "succeeded":
                body["result"] = {"level": params.get("level")}
            else:
                body["error"] = {"code": "hw", "message": "driver fault"}
            c.publish(topic, orjson.dumps(body), qos=1)

        threading.Thread(target=answer, daemon=True).start()

    def stop(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
async def test_command_round_trips(broker: PrivateBroker, tmp_path: Path, v5: bool) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        controller="ctl-cmd",
        broker={"mode": "external", "host": broker.host, "port": broker.port},
    )
    device = FakeDevice(broker, v5)
    try:
        async with open_runtime(settings, Reservations()) as rt:
            cmd = rt.commands
            ok = await cmd.send(DEV, "set_level", {"level": 40}, timeout_s=5)
            assert (ok.status, ok.accepted, ok.result) == ("succeeded", True, {"level": 40})
            assert 0 < ok.latency_s < 5

            # the same id twice: one request on the wire, the same outcome twice
            a, b = await asyncio.gather(
                cmd.send(DEV, "set_level", {"level": 70}, command_id="dup-1"),
                cmd.send(DEV, "set_level", {"level": 70}, command_id="dup-1"),
            )
            again = await cmd.send(DEV, "set_level", {"level": 70}, command_id="dup-1")
            assert a == b == again and a.status == "succeeded"
            assert sum(1 for r in device.requests if r["id"] == "dup-1") == 1

            rejected = await cmd.send(DEV, "bogus", timeout_s=5)
            assert rejected.status == "rejected" and "unknown_op" in (rejected.error or "")
            failed = await cmd.send(DEV, "set_level", {"fail": True}, timeout_s=5)
            assert failed.status == "failed" and failed.accepted

            # deadline miss: the device answers after the deadline; logged, never applied
            late = await cmd.send(DEV, "set_level", {"level": 1, "delay_s": 1.5}, timeout_s=0.5)
            assert late.status == "timeout" and late.accepted
            deadline = time.monotonic() + 5
            while cmd.stats.late < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert cmd.stats.late == 1 and late.id in cmd.stats.late_ids
            assert (await cmd.send(DEV, "x", command_id=late.id)).status == "timeout"
    finally:
        device.stop()
    if v5:  # MQTT 5 message expiry carried the deadline on every request
        assert device.expiry and all(e is not None and e >= 1 for e in device.expiry)
