"""A collocation trial mixing an MQTT reference with serial candidates on ptys, end to end:
``labctl run`` as a subprocess, the simulated rig with serial simulators, a real Mosquitto and
a real InfluxDB, and faults (line noise, an unplug, a silence) along the way."""

from __future__ import annotations

import json

from tests.e2e.conftest import Lab
from tests.e2e.test_pm25_trial import influx_count, with_sinks
from tests.tsdb import InfluxServer

SERIAL = ("plantower/pms5003-0001", "nova/sds011-0001")


def test_mixed_mqtt_and_serial_trial(lab: Lab, influxd: InfluxServer, sims_gone: None) -> None:
    with_sinks(lab, influxd)
    # 1 device day at 8000×: one serial frame every 7.5 ms of wall time.
    lab.config["rig"] = {"sim": {"preset": "pm25-serial", "speed": 8000}}
    devices = {
        "reference": {"role": "reference", "channel": "pm25"},
        "candidates": {"role": "dut", "channel": "pm25", "min": 3},  # wait for all three
    }
    spec = lab.spec(duration="1d", averaging="1h", devices=devices)
    proc = lab.labctl("run", str(spec), "--json", timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    rec = json.loads(proc.stdout)
    subjects = {s["subject"]: s for s in rec["evaluation"]["subjects"]}
    assert set(subjects) == {"airsense/as10-0001", *SERIAL}
    devices = {d["key"]: d for d in rec["devices"]}
    for key in SERIAL:
        assert devices[key]["role"] == "dut"
        assert devices[key]["readings"] > 0.8 * 1440
        [completeness] = [c for c in subjects[key]["criteria"] if c["metric"] == "completeness"]
        assert completeness["value"] >= 0.75
    # the unplugged PMS5003 shows its gap: below the never-unplugged MQTT candidate
    comp = {
        k: next(c["value"] for c in s["criteria"] if c["metric"] == "completeness")
        for k, s in subjects.items()
    }
    assert comp["plantower/pms5003-0001"] < comp["airsense/as10-0001"]
    # line noise was discarded and counted, never read
    rejected = rec["counters"]["rejected"]
    assert rejected.get("serial_noise", 0) + rejected.get("serial_checksum", 0) >= 1
    # the serial readings went the same durable path: spool → InfluxDB, nothing lost
    assert all(s["caught_up"] for s in rec["sinks"]), rec["sinks"]
    assert influx_count(influxd, rec["id"]) == rec["counters"]["readings"]
    for key in SERIAL:
        vendor, device = key.split("/")
        rows = influxd.query(
            f'SELECT count("pm25") FROM "telemetry" WHERE "run" = \'{rec["id"]}\' '
            f"AND \"vendor\" = '{vendor}' AND \"device\" = '{device}'"
        )
        assert int(rows[0]["count"]) == devices[key]["readings"], key
