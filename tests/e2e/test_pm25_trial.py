"""The PM2.5 collocation trial end to end: simulated devices over a real Mosquitto, the real
evaluator, metrics into real TSDBs with nothing lost, and a verdict that matches the error
models."""

from __future__ import annotations

import json
import time

from labctl.bus.broker import PrivateBroker
from tests.e2e.conftest import Lab, interrupt, wait_for_line
from tests.tsdb import InfluxServer, VictoriaMetricsServer


def influx_count(influxd: InfluxServer, run_id: str) -> int:
    rows = influxd.query(f'SELECT count("pm25") FROM "telemetry" WHERE "run" = \'{run_id}\'')
    return int(rows[0]["count"]) if rows else 0


def vm_count(vm: VictoriaMetricsServer, run_id: str) -> int:
    series = vm.export(f'{{__name__="telemetry_pm25",run="{run_id}"}}')
    return sum(len(s["values"]) for s in series)


def with_sinks(lab: Lab, influxd: InfluxServer, vm: VictoriaMetricsServer | None = None) -> None:
    sinks: list[dict[str, object]] = [
        {"name": "influx16", "api": "v1", "url": influxd.url, "database": influxd.database}
    ]
    if vm is not None:
        sinks.append(
            {
                "name": "vm",
                "api": "v2",
                "url": vm.url,
                "org": "lab",
                "bucket": "labctl",
                "token": "secret-token",
            }
        )
    lab.config["metrics"]["influx"] = sinks


def test_collocation_trial_end_to_end(
    lab: Lab, influxd: InfluxServer, victoria_metrics: VictoriaMetricsServer, sims_gone: None
) -> None:
    with_sinks(lab, influxd, victoria_metrics)
    proc = lab.labctl("run", "trials/pm25-collocation.yaml", "--json", timeout=180)
    rec = json.loads(proc.stdout)
    subjects = {s["subject"]: s for s in rec["evaluation"]["subjects"]}
    assert set(subjects) == {"airsense/as10-0001", "airsense/as10-0002", "nimbus/nb2-0001"}
    # exit code and status follow the criteria outcomes
    all_pass = all(c["passed"] for s in subjects.values() for c in s["criteria"])
    assert proc.returncode == (0 if all_pass else 1), proc.stderr
    assert rec["status"] == ("passed" if all_pass else "failed")
    assert subjects["airsense/as10-0001"]["passed"] and subjects["airsense/as10-0002"]["passed"]
    # the humid-failing candidate: fine in drier air, fails rmse/r2 once RH ≥ 85 %, and named
    nimbus = subjects["nimbus/nb2-0001"]
    [lim] = [x for x in nimbus["limitations"] if x["condition"] == "rh"]
    assert "≥ 85" in lim["bin"] and {"r2", "rmse"} & set(lim["criteria"])
    humid = [b for b in nimbus["breakdown"] if b["condition"] == "rh" and "≥ 85" in b["label"]]
    assert humid[0]["n"] >= 50 and humid[0]["metrics"]["rmse"] > 7
    assert "nimbus/nb2-0001" in lim["text"]
    assert not [
        x
        for s in ("airsense/as10-0001", "airsense/as10-0002")
        for x in subjects[s]["limitations"]
        if x["condition"] == "rh"
    ]
    # precision across the two AS-10 units (EPA formula)
    assert [g["group"] for g in rec["evaluation"]["groups"]] == ["AS-10"]

    # Nothing lost: every reading the devices published is in both TSDBs, exactly once.
    published = lab.sim_published(rec["id"])
    assert published >= 4 * 30 * 1440
    assert rec["counters"]["readings"] == published
    assert all(s["caught_up"] for s in rec["sinks"]), rec["sinks"]
    assert influx_count(influxd, rec["id"]) == published
    assert vm_count(victoria_metrics, rec["id"]) == published
    # the verdict is a point too
    rows = influxd.query(f'SELECT "passed" FROM "verdict" WHERE "run" = \'{rec["id"]}\'')
    assert len(rows) == 3

    # the run store has it, in table and JSON form
    shown = lab.labctl("runs", "show", rec["id"], "--json")
    assert json.loads(shown.stdout)["id"] == rec["id"]
    listed = lab.labctl("runs", "list")
    assert rec["id"] in listed.stdout and rec["status"] in listed.stdout
    table = lab.labctl("runs", "show", rec["id"])
    assert "nimbus/nb2-0001" in table.stdout and "RH ≥ 85" in table.stdout


def test_tsdb_outage_mid_trial_loses_nothing(
    lab: Lab, influxd: InfluxServer, sims_gone: None
) -> None:
    with_sinks(lab, influxd)
    lab.config["rig"] = {"sim": {"speed": 60_000}}
    spec = lab.spec(duration="6d")
    proc = lab.start("run", str(spec), "--json")
    wait_for_line(proc, "preflight passed", 60)
    time.sleep(1.0)
    influxd.stop()
    time.sleep(3.0)
    influxd.start()
    out, err = proc.communicate(timeout=180)
    assert proc.returncode in (0, 1), err
    rec = json.loads(out)
    published = lab.sim_published(rec["id"])
    assert rec["counters"]["readings"] == published
    [sink] = rec["sinks"]
    assert sink["caught_up"], sink
    assert influx_count(influxd, rec["id"]) == published


def test_broker_restart_mid_trial_loses_no_reading(
    lab: Lab, broker: PrivateBroker, sims_gone: None
) -> None:
    lab.config["rig"] = {"sim": {"speed": 60_000}}
    spec = lab.spec(duration="6d")
    proc = lab.start("run", str(spec), "--json")
    wait_for_line(proc, "preflight passed", 60)
    time.sleep(1.0)
    broker.stop()
    time.sleep(1.5)
    broker.start()
    out, err = proc.communicate(timeout=180)
    assert proc.returncode in (0, 1), err
    rec = json.loads(out)
    # every (session, seq) the simulated devices had acknowledged by the broker arrived once
    stats = json.loads((lab.data_dir / "runs" / rec["id"] / "sim-stats.json").read_text())
    published = sum(int(d["published"]) for d in stats.values())
    sessions = sum(len(d["sessions"]) for d in stats.values())
    assert sessions > 4, "devices should have reconnected with new sessions"
    assert rec["counters"]["readings"] == published


def test_ctrl_c_records_an_aborted_run_after_teardown(lab: Lab, sims_gone: None) -> None:
    lab.config["rig"] = {"sim": {"speed": 20_000}}
    proc = lab.start("run", "trials/pm25-collocation.yaml", "--json")
    wait_for_line(proc, "preflight passed", 60)
    time.sleep(1.0)
    interrupt(proc)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    rec = json.loads(out)
    assert rec["status"] == "aborted" and "teardown done" in rec["message"]
    # the simulators were stopped cleanly: they wrote their stats on the way out
    assert (lab.data_dir / "runs" / rec["id"] / "sim-stats.json").exists()
    listed = json.loads(lab.labctl("runs", "list", "--json").stdout)
    assert listed[0]["status"] == "aborted"


def test_missing_devices_are_a_rig_fault(lab: Lab, sims_gone: None) -> None:
    lab.config["rig"] = {"simulated": False, "preflight_timeout_s": 2}
    spec = lab.spec()
    # no devices at all on this broker: preflight fails in words, exit 3, run recorded
    proc = lab.labctl("run", str(spec), "--json", timeout=120)
    assert proc.returncode == 3, proc.stderr
    rec = json.loads(proc.stdout)
    assert rec["status"] == "faulted"
    assert "'reference' needs at least 1 online device" in rec["message"]


def test_spec_check_cli(lab: Lab) -> None:
    ok = lab.labctl("spec", "check", "trials/pm25-collocation.yaml")
    assert ok.returncode == 0 and "pm25-collocation" in ok.stdout
    bad = lab.root / "bad.yaml"
    bad.write_text(
        "trial: t\ntitle: x\nkind: sensor-accuracy\ndevices: {}\nduration: 1d\n"
        "criteria:\n  r2: {min: 0.7}\n"
    )
    res = lab.labctl("spec", "check", str(bad), "trials/pm25-collocation.yaml")
    assert res.returncode == 2
    assert f"{bad}:4: devices:" in res.stderr
