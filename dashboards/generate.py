"""Write the Grafana dashboards in ``grafana/`` (JSON model, InfluxQL) from one description.

    .venv/bin/python dashboards/generate.py

The JSON files are committed; edit this script and re-run it rather than editing the JSON, so
panel ids, grid positions and the datasource stay consistent (tests/integration/
test_grafana_dashboards.py checks them and runs every query against a real influxd).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DS = {"type": "influxdb", "uid": "labctl-influx"}
"""Must match ``provisioning/datasources/labctl.yaml``."""


def variable(name: str, label: str, query: str, *, multi: bool = False) -> dict[str, Any]:
    """A query variable (InfluxQL ``SHOW TAG VALUES``)."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": query,
        "definition": query,
        "refresh": 2,
        "sort": 2 if name == "run" else 1,
        "multi": multi,
        "includeAll": multi,
        "current": {},
        "options": [],
        "hide": 0,
    }


def target(query: str, ref: str = "A", fmt: str = "time_series") -> dict[str, Any]:
    """A raw InfluxQL query."""
    return {"refId": ref, "datasource": DS, "rawQuery": True, "query": query, "resultFormat": fmt}


def panel(
    kind: str, title: str, queries: list[str], grid: tuple[int, int, int, int], **extra: Any
) -> dict[str, Any]:
    """A panel; ``grid`` is (x, y, w, h) on Grafana's 24-column grid."""
    x, y, w, h = grid
    fmt = "table" if kind == "table" else "time_series"
    return {
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [target(q, chr(ord("A") + i), fmt) for i, q in enumerate(queries)],
        **extra,
    }


def dashboard(
    uid: str,
    title: str,
    variables: list[dict[str, Any]],
    panels: list[dict[str, Any]],
    time_from: str = "now-30d",
) -> dict[str, Any]:
    """A dashboard JSON model (ids assigned in order)."""
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {
        "uid": uid,
        "title": title,
        "tags": ["labctl"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "10s",
        "time": {"from": time_from, "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "panels": panels,
    }


TRIAL = variable("trial", "Trial", 'SHOW TAG VALUES FROM "telemetry" WITH KEY = "trial"')
RUN = variable(
    "run", "Run", 'SHOW TAG VALUES FROM "telemetry" WITH KEY = "run" WHERE "trial" =~ /^$trial$/'
)
VENDOR = variable(
    "vendor", "Vendor", 'SHOW TAG VALUES FROM "telemetry" WITH KEY = "vendor"', multi=True
)
DEVICE = variable(
    "device",
    "Device",
    'SHOW TAG VALUES FROM "telemetry" WITH KEY = "device" WHERE "run" =~ /^$run$/',
    multi=True,
)
RIG_DEVICE = variable(
    "device",
    "Device",
    'SHOW TAG VALUES FROM "telemetry" WITH KEY = "device" WHERE "vendor" =~ /^$vendor$/',
    multi=True,
)


def channel_query(channel: str) -> str:
    return (
        f'SELECT mean("{channel}") FROM "telemetry" WHERE "run" =~ /^$run$/ AND '  # noqa: S608
        f'"device" =~ /^$device$/ AND $timeFilter GROUP BY time($__interval), "device" fill(none)'
    )


def trial_dashboard() -> dict[str, Any]:
    ts = "timeseries"
    return dashboard(
        "labctl-trial",
        "labctl · trial",
        [TRIAL, RUN, DEVICE],
        [
            panel(
                "table",
                "Verdict per device (pass/fail per criterion)",
                [
                    'SELECT last("passed") AS "passed", last("slope") AS "slope", '
                    'last("intercept") AS "intercept", last("r2") AS "r2", '
                    'last("rmse") AS "rmse", last("completeness") AS "completeness" '
                    'FROM "verdict" WHERE "run" =~ /^$run$/ GROUP BY "vendor", "device"'
                ],
                (0, 0, 24, 7),
            ),
            panel(
                ts,
                "PM2.5 — candidates vs reference (µg/m³)",
                [channel_query("pm25")],
                (0, 7, 24, 9),
            ),
            panel(ts, "Relative humidity (%)", [channel_query("rh")], (0, 16, 12, 8)),
            panel(ts, "Temperature (°C)", [channel_query("temperature")], (12, 16, 12, 8)),
            panel(
                ts,
                "Readings per device",
                [
                    'SELECT count("seq") FROM "telemetry" WHERE "run" =~ /^$run$/ AND '
                    '"device" =~ /^$device$/ AND $timeFilter '
                    'GROUP BY time($__interval), "device" fill(none)'
                ],
                (0, 24, 12, 8),
            ),
            panel(
                "table",
                "Rejected messages by reason",
                [
                    'SELECT sum("count") AS "rejected" FROM "rejected" WHERE "run" =~ /^$run$/ '
                    'AND $timeFilter GROUP BY "device", "reason"'
                ],
                (12, 24, 12, 8),
            ),
            panel(
                "table",
                "Run events (phases, presence)",
                [
                    'SELECT "kind", "name", "detail" FROM "event" WHERE "run" =~ /^$run$/ '
                    "AND $timeFilter"
                ],
                (0, 32, 24, 8),
            ),
        ],
    )


def rig_dashboard() -> dict[str, Any]:
    return dashboard(
        "labctl-rig",
        "labctl · rig",
        [VENDOR, RIG_DEVICE],
        [
            panel(
                "timeseries",
                "Readings per device",
                [
                    'SELECT count("seq") FROM "telemetry" WHERE "vendor" =~ /^$vendor$/ AND '
                    '"device" =~ /^$device$/ AND $timeFilter '
                    'GROUP BY time($__interval), "vendor", "device" fill(none)'
                ],
                (0, 0, 24, 9),
            ),
            panel(
                "table",
                "Last reading per device",
                [
                    'SELECT last("seq") AS "seq", last("session") AS "session" FROM "telemetry" '
                    'WHERE "vendor" =~ /^$vendor$/ AND "device" =~ /^$device$/ AND $timeFilter '
                    'GROUP BY "vendor", "device", "role"'
                ],
                (0, 9, 12, 8),
            ),
            panel(
                "table",
                "Presence changes (online / offline / lost)",
                [
                    'SELECT "name" AS "state", "detail" FROM "event" WHERE "kind" = \'presence\' '
                    "AND $timeFilter"
                ],
                (12, 9, 12, 8),
            ),
            panel(
                "table",
                "Rejected messages by device and reason",
                [
                    'SELECT sum("count") AS "rejected" FROM "rejected" WHERE '
                    '"vendor" =~ /^$vendor$/ AND $timeFilter GROUP BY "vendor", "device", "reason"'
                ],
                (0, 17, 24, 8),
            ),
        ],
    )


def runs_dashboard() -> dict[str, Any]:
    return dashboard(
        "labctl-runs",
        "labctl · runs and verdicts",
        [TRIAL, VENDOR],
        [
            panel(
                "table",
                "Verdicts (one row per run and device under test)",
                [
                    'SELECT last("passed") AS "passed", last("slope") AS "slope", '
                    'last("r2") AS "r2", last("rmse") AS "rmse" FROM "verdict" '
                    'WHERE "trial" =~ /^$trial$/ AND "vendor" =~ /^$vendor$/ AND $timeFilter '
                    'GROUP BY "run", "vendor", "device"'
                ],
                (0, 0, 24, 10),
            ),
            panel(
                "timeseries",
                "Runs over time (devices passing per run)",
                [
                    'SELECT count("passed") FROM "verdict" WHERE "trial" =~ /^$trial$/ AND '
                    '"vendor" =~ /^$vendor$/ AND "passed" = true AND $timeFilter '
                    "GROUP BY time(1d) fill(none)"
                ],
                (0, 10, 24, 8),
            ),
        ],
        time_from="now-90d",
    )


def main() -> None:
    for name, model in (
        ("labctl-trial", trial_dashboard()),
        ("labctl-rig", rig_dashboard()),
        ("labctl-runs", runs_dashboard()),
    ):
        path = HERE / "grafana" / f"{name}.json"
        path.write_text(json.dumps(model, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
