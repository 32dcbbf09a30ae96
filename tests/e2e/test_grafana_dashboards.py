"""The Grafana dashboards in ``dashboards/``: structure (panel ids, grid, datasource uids that
match the provisioning file, the compose file), and every InfluxQL query — variables included —
run against a real influxd 1.6 holding the data of a real trial."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from labctl.bus.broker import PrivateBroker
from tests.e2e.conftest import Lab
from tests.e2e.test_pm25_trial import with_sinks
from tests.tsdb import InfluxServer

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
MODELS = sorted((DASHBOARDS / "grafana").glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    model: dict[str, Any] = json.loads(path.read_text())
    return model


def provisioned_uids() -> set[str]:
    prov = yaml.safe_load((DASHBOARDS / "provisioning/datasources/labctl.yaml").read_text())
    return {d["uid"] for d in prov["datasources"]}


def queries(model: dict[str, Any]) -> list[str]:
    return [t["query"] for p in model["panels"] for t in p["targets"]]


def test_dashboard_models_are_consistent() -> None:
    assert {p.stem for p in MODELS} == {"labctl-trial", "labctl-rig", "labctl-runs"}
    uids = provisioned_uids()
    seen_uids = set()
    for path in MODELS:
        m = load(path)
        assert m["uid"] not in seen_uids
        seen_uids.add(m["uid"])
        ids = [p["id"] for p in m["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        cells: set[tuple[int, int]] = set()
        for p in m["panels"]:
            g = p["gridPos"]
            assert all(isinstance(g[k], int) and g[k] >= 0 for k in "xywh"), path.name
            assert g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, (path.name, p["title"])
            xs, ys = range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])
            mine = {(x, y) for x in xs for y in ys}
            assert not cells & mine, f"{path.name}: {p['title']!r} overlaps another panel"
            cells |= mine
            assert p["datasource"]["uid"] in uids
            for t in p["targets"]:
                assert t["datasource"]["uid"] in uids and t["rawQuery"] is True
        for v in m["templating"]["list"]:
            assert v["datasource"]["uid"] in uids
            used = any(f"${v['name']}" in q for q in queries(m))
            used |= any(f"${v['name']}" in w["query"] for w in m["templating"]["list"])
            assert used, f"{path.name}: variable {v['name']} is never used"
    trial = load(DASHBOARDS / "grafana/labctl-trial.json")
    trial_vars = {v["name"] for v in trial["templating"]["list"]}
    assert {"trial", "run", "device"} <= trial_vars
    # the provider loads the folder compose mounts the JSON into
    provider = yaml.safe_load((DASHBOARDS / "provisioning/dashboards/labctl.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((DASHBOARDS / "compose.yaml").read_text())
    services = compose["services"]
    assert {"mosquitto", "influxdb", "grafana", "controller"} <= set(services)
    assert f"./grafana:{path}:ro" in services["grafana"]["volumes"]
    assert "./provisioning:/etc/grafana/provisioning:ro" in services["grafana"]["volumes"]
    assert services["influxdb"]["environment"]["INFLUXDB_DB"] == "labctl"
    assert "serve" in services["controller"]["command"]
    assert (DASHBOARDS / "systemd" / "labctl-serve.service").is_file()


def _substitute(q: str, values: dict[str, list[str]], lo_ms: int, hi_ms: int) -> str:
    for name, vals in values.items():
        q = q.replace(f"${name}", "(" + "|".join(re.escape(v) for v in vals) + ")")
    q = q.replace("$timeFilter", f"time >= {lo_ms}ms and time <= {hi_ms}ms")
    return q.replace("$__interval", "1h")


def _garbage(broker: PrivateBroker, stop: threading.Event) -> None:
    """A misbehaving candidate during the run, so the rejected panels have rows."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="garbage")
    c.connect(broker.host, broker.port)
    c.loop_start()
    while not stop.is_set():
        c.publish("lab/v1/airsense/as10-0001/telemetry/pm25", b"not json", qos=1)
        time.sleep(0.05)
    c.loop_stop()
    c.disconnect()


def test_every_query_returns_rows_from_a_real_trial(
    lab: Lab, influxd: InfluxServer, broker: PrivateBroker, sims_gone: None
) -> None:
    with_sinks(lab, influxd)
    lab.config["rig"] = {"sim": {"speed": 50_000}}
    spec = lab.spec(duration="2d")
    stop = threading.Event()
    noise = threading.Thread(target=_garbage, args=(broker, stop), daemon=True)
    noise.start()
    try:
        proc = lab.labctl("run", str(spec), "--json", timeout=120)
    finally:
        stop.set()
        noise.join(5)
    rec = json.loads(proc.stdout)
    assert rec["status"] in ("passed", "failed"), proc.stderr
    assert all(s["caught_up"] for s in rec["sinks"]), rec["sinks"]
    assert sum(rec["counters"]["rejected"].values()) > 0, "no rejected messages to chart"

    # a time range covering the data: device time of the readings, wall time of the rest
    first = influxd.query(f'SELECT first("pm25") FROM "telemetry" WHERE "run" = \'{rec["id"]}\'')
    lo_ms = min(int(first[0]["time"]) // 1_000_000, int(rec["started_at"] * 1000)) - 3_600_000
    hi_ms = int(time.time() * 1000) + 3_600_000

    checked = 0
    for path in MODELS:
        m = load(path)
        values: dict[str, list[str]] = {}
        for v in m["templating"]["list"]:  # in order: later variables use earlier ones
            rows = influxd.query(_substitute(v["query"], values, lo_ms, hi_ms))
            found = sorted({r["value"] for r in rows})
            assert found, f"{path.name}: variable {v['name']} has no values"
            if v["name"] == "run":
                assert rec["id"] in found
                found = [rec["id"]]
            values[v["name"]] = found
            checked += 1
        for p in m["panels"]:
            for t in p["targets"]:
                q = _substitute(t["query"], values, lo_ms, hi_ms)
                assert not re.search(r"\$[A-Za-z_]", q), q
                rows = influxd.query(q)
                assert rows, f"{path.name}: panel {p['title']!r} returns no rows: {q}"
                for alias in re.findall(r'AS "(\w+)"', q):  # every named column has values
                    assert any(r.get(alias) is not None for r in rows), (path.name, alias)
                checked += 1
    assert checked >= 15
