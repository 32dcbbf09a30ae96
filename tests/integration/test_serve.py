"""``labctl serve`` against a real broker: presence with Last Will, clean shutdown, the device
registry, quarantine of malformed manifests, floods, reservations between runs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
import psutil
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from labctl.bus.broker import PrivateBroker
from labctl.serve.discovery import read_info
from tests.served import CTL, Served

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path: Path, broker: PrivateBroker) -> Iterator[Served]:
    s = Served(tmp_path, broker)
    yield s
    s.stop()


def client(broker: PrivateBroker, cid: str, v5: bool = True) -> paho.Client:
    c = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=cid, protocol=paho.MQTTv5 if v5 else paho.MQTTv311
    )
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def retained(broker: PrivateBroker, topic: str, timeout: float = 3.0) -> bytes | None:
    got: list[bytes] = []
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"peek-{time.monotonic_ns()}")
    c.on_message = lambda cl, u, m: got.append(m.payload)
    c.connect(broker.host, broker.port)
    c.subscribe(topic, qos=1)
    c.loop_start()
    deadline = time.monotonic() + timeout
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    c.loop_stop()
    c.disconnect()
    return got[0] if got else None


def wait_until(pred: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


MANIFEST = {
    "schema": "labctl/1",
    "version": 1,
    "session": "s1",
    "device": {"vendor": "acme", "id": "d1", "model": "M1", "serial": "1", "sw_version": "1.2"},
    "channels": [{"name": "pm25", "unit": "µg/m³", "rate_hz": 1}],
}


def test_presence_registry_and_clean_shutdown(served: Served, broker: PrivateBroker) -> None:
    state = retained(broker, f"lab/v1/_ctl/{CTL}/state")
    assert state is not None and json.loads(state)["state"] == "online"
    dev = client(broker, "acme-d1")
    dev.publish("lab/v1/acme/d1/manifest", orjson.dumps(MANIFEST), qos=1, retain=True)
    dev.publish("lab/v1/acme/d1/state", b'{"state":"online","session":"s1"}', qos=1, retain=True)
    wait_until(lambda: served.devices().get("acme/d1", {}).get("state") == "online", what="online")
    d = served.devices()["acme/d1"]
    assert (d["model"], d["firmware"], d["channels"]) == ("M1", "1.2", ["pm25"])
    dev.publish("lab/v1/acme/d1/state", b'{"state":"offline","session":"s1"}', qos=1, retain=True)
    wait_until(lambda: served.devices()["acme/d1"]["state"] == "offline", what="offline")
    dev.loop_stop()

    served.stop()
    assert served.proc.returncode == 0
    assert json.loads(retained(broker, f"lab/v1/_ctl/{CTL}/state") or b"{}")["state"] == "offline"
    assert read_info(served.data) is None
    # the registry outlives the controller
    assert served.devices()["acme/d1"]["state"] == "offline"


def test_controller_last_will_when_killed(served: Served, broker: PrivateBroker) -> None:
    served.proc.kill()
    served.proc.wait(10)
    wait_until(
        lambda: (
            json.loads(retained(broker, f"lab/v1/_ctl/{CTL}/state") or b"{}").get("state") == "lost"
        ),
        timeout=60,
        what="the controller's Last Will",
    )


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
def test_malformed_manifests_quarantine_and_the_controller_keeps_running(
    served: Served, broker: PrivateBroker, v5: bool
) -> None:
    deep = b'{"a":' * 500 + b"1" + b"}" * 500
    bad: dict[str, bytes] = {
        "json": b"{not json",
        "utf8": b'{"schema":"labctl/1","version":1,"session":"\xff\xfe"}',
        "types": orjson.dumps(
            {**MANIFEST, "version": "one", "device": {**MANIFEST["device"], "id": "types"}}
        ),  # type: ignore[dict-item]
        "big": orjson.dumps(
            {**MANIFEST, "device": {**MANIFEST["device"], "id": "big"}, "pad": "x" * 70_000}
        ),
        "deep": deep,
        "nan": orjson.dumps({**MANIFEST, "device": {**MANIFEST["device"], "id": "nan"}}).replace(
            b'"rate_hz":1', b'"rate_hz":NaN'
        ),
        "schema": orjson.dumps(
            {**MANIFEST, "schema": "labctl/9", "device": {**MANIFEST["device"], "id": "schema"}}
        ),
        "mismatch": orjson.dumps(MANIFEST),  # says acme/d1 on acme/mismatch
    }
    dev = client(broker, "acme-bad", v5)
    for name, payload in bad.items():
        dev.publish(f"lab/v1/acme/{name}/manifest", payload, qos=1).wait_for_publish(5)
    # the controller is still fine: a good device onboards after the bad ones
    dev.publish("lab/v1/acme/d1/manifest", orjson.dumps(MANIFEST), qos=1).wait_for_publish(5)
    dev.publish("lab/v1/acme/d1/state", b'{"state":"online","session":"s1"}', qos=1)
    wait_until(lambda: served.devices().get("acme/d1", {}).get("state") == "online", what="d1")
    devices = served.devices()
    for name in bad:
        d = devices.get(f"acme/{name}")
        assert d is not None, name
        assert d["state"] == "quarantined" and d["quarantined"], (name, d)
    shown = served.labctl("devices", "show", "acme/mismatch")
    assert "acme/d1" in shown.stdout and "quarantined" in shown.stdout
    assert served.proc.poll() is None
    dev.loop_stop()


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
def test_floods_and_absurd_timestamps_are_dropped_with_memory_bounded(
    served: Served, broker: PrivateBroker, v5: bool
) -> None:
    dev = client(broker, "acme-d1", v5)
    dev.publish("lab/v1/acme/d1/manifest", orjson.dumps(MANIFEST), qos=1, retain=True)
    dev.publish("lab/v1/acme/d1/state", b'{"state":"online","session":"s1"}', qos=1)
    wait_until(lambda: "acme/d1" in served.devices(), what="d1")
    rss = psutil.Process(served.proc.pid)

    def flood(n: int, start: int) -> None:
        infos = []
        for i in range(start, start + n):
            ts = 1.0 if i % 2 else 9e12  # 1970 and the far future
            body = orjson.dumps({"session": "s1", "seq": i, "ts": ts, "v": {"pm25": 1.0}})
            infos.append(dev.publish("lab/v1/acme/d1/telemetry/air", body, qos=1))
        for info in infos:
            info.wait_for_publish(30)

    flood(10_000, 0)
    wait_until(lambda: served.devices()["acme/d1"]["rejected"] >= 10_000, 60, "first flood")
    before = rss.memory_info().rss
    flood(30_000, 10_000)
    wait_until(lambda: served.devices()["acme/d1"]["rejected"] >= 40_000, 90, "second flood")
    growth = rss.memory_info().rss - before
    assert served.devices()["acme/d1"]["readings"] == 0
    assert growth < 20 * 2**20, f"controller grew {growth / 2**20:.1f} MiB over 30k bad messages"
    dev.loop_stop()


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
def test_takeover_last_will_does_not_mark_the_new_session_offline(
    served: Served, broker: PrivateBroker, v5: bool
) -> None:
    def device(session: str) -> paho.Client:
        # No auto-reconnect: a kicked-out client that reconnects would take the id back, and
        # the new session's own will would then fire (a fight, not a takeover).
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id="acme-d1",
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            reconnect_on_failure=False,
        )
        c.will_set(
            "lab/v1/acme/d1/state",
            orjson.dumps({"state": "lost", "session": session}),
            qos=1,
            retain=True,
        )
        c.connect(broker.host, broker.port)
        c.loop_start()
        c.publish(
            "lab/v1/acme/d1/manifest",
            orjson.dumps({**MANIFEST, "session": session}),
            qos=1,
            retain=True,
        )
        c.publish(
            "lab/v1/acme/d1/state",
            orjson.dumps({"state": "online", "session": session}),
            qos=1,
            retain=True,
        ).wait_for_publish(5)
        return c

    old = device("s1")
    wait_until(lambda: served.devices().get("acme/d1", {}).get("session") == "s1", what="s1")
    new = device("s2")  # same client id: the broker drops the old connection, firing its will
    time.sleep(2.0)
    d = served.devices()["acme/d1"]
    assert (d["state"], d["session"]) == ("online", "s2")
    old.loop_stop()
    new.loop_stop()


def test_two_runs_never_share_a_device(tmp_path: Path, broker: PrivateBroker) -> None:
    # runs hosted by the controller use its settings: a slower simulated rig
    served = Served(tmp_path / "slow", broker, speed=25_000)
    try:
        spec = yaml.safe_load((REPO / "trials" / "pm25-collocation.yaml").read_text())
        # Long enough (~14 s at 25,000×) to outlast two `labctl run` clients starting up on a
        # busy 2-core machine: the queued one must be submitted while the first still runs.
        spec["duration"] = "4d"
        path = tmp_path / "short.yaml"
        path.write_text(yaml.safe_dump(spec))
        first = subprocess.Popen(
            [sys.executable, "-m", "labctl.cli.main", "run", str(path), "--json"],
            cwd=REPO,
            env=served.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        info = read_info(served.data)
        assert info is not None
        with info.client() as c:
            wait_until(lambda: c.get("/api/reservations").json(), 30, "the first reservation")
            holder = next(iter(c.get("/api/reservations").json().values()))["run"]
        refused = served.labctl("run", str(path), "--json", "--no-wait")
        rec = json.loads(refused.stdout)
        assert refused.returncode == 3 and rec["status"] == "faulted"
        assert f"held by run {holder}" in rec["message"]
        assert first.poll() is None, "the first run should still be going"
        queued = served.labctl("run", str(path), "--json")  # waits for the first, then runs
        out, err = first.communicate(timeout=120)
        first_rec = json.loads(out)
        assert first_rec["status"] in ("passed", "failed"), err
        second = json.loads(queued.stdout)
        assert second["status"] in ("passed", "failed"), queued.stderr
        assert second["started_at"] < first_rec["ended_at"] <= second["ended_at"]
        assert second["counters"]["readings"] > 0
        with info.client() as c:
            assert c.get("/api/reservations").json() == {}
    finally:
        served.stop()


def test_forget_clears_retained_topics_and_registry(served: Served, broker: PrivateBroker) -> None:
    dev = client(broker, "acme-d1")
    dev.publish("lab/v1/acme/d1/manifest", orjson.dumps(MANIFEST), qos=1, retain=True)
    dev.publish("lab/v1/acme/d1/state", b'{"state":"online","session":"s1"}', qos=1, retain=True)
    wait_until(lambda: "acme/d1" in served.devices(), what="d1")
    dev.loop_stop()
    dev.disconnect()
    out = served.labctl("devices", "forget", "acme/d1")
    assert out.returncode == 0, out.stderr
    assert "acme/d1" not in served.devices()
    assert retained(broker, "lab/v1/acme/d1/manifest", 1.0) is None


def test_api_needs_the_token(served: Served) -> None:
    import httpx

    info = read_info(served.data)
    assert info is not None
    assert httpx.get(f"{info.url}/api/devices").status_code == 401
    assert (
        httpx.get(f"{info.url}/api/devices", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    assert oct((served.data / "serve.json").stat().st_mode & 0o777) == "0o600"


async def test_configured_serial_devices_are_read_between_runs(
    tmp_path: Path, broker: PrivateBroker
) -> None:
    from tests.integration.test_serial_pty import _bench

    async with _bench(tmp_path / "pty", "pms5003") as bench:
        cfg: dict[str, object] = {
            "path": bench.path,
            "driver": "pms5003",
            "vendor": "acme",
            "id": "pms-1",
            "model": "PMS5003",
            "serial": "S1",
        }
        served = await asyncio.to_thread(Served, tmp_path / "srv", broker, 300_000, [cfg])
        try:
            deadline = time.monotonic() + 20
            dev: dict[str, Any] = {}
            while time.monotonic() < deadline:
                dev = (await asyncio.to_thread(served.devices)).get("acme/pms-1", {})
                if dev.get("state") == "online" and dev.get("readings", 0) >= 3:
                    break
                await asyncio.sleep(0.3)
            assert dev.get("state") == "online", dev
            assert dev["readings"] >= 3 and dev["model"] == "PMS5003"
            assert "pm25" in dev["channels"]
        finally:
            await asyncio.to_thread(served.stop)
