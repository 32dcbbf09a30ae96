#!/usr/bin/env python3
"""Wall time of ``labctl run trials/pm25-collocation.yaml`` from start to verdict.

Each run is a fresh ``labctl run --json`` subprocess with a fresh ``LABCTL_DATA_DIR`` (so the
embedded private broker, the spool and the run store start empty) and no ``LABCTL_*`` variable
from the caller's environment. ``--influx`` adds as many runs again with a private influxd 1.6
as a v1 sink (a ``labctl.yaml`` named by ``LABCTL_CONFIG``), so the time includes draining the
spool into it, and counts the run's points there.

Run: ``.venv/bin/python benchmarks/trial_walltime.py [--runs 3] [--influx]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import REPO, fmt_s, load_note, median, table, use_repo_imports

use_repo_imports()

TARGET_S = 30.0
DEFAULT_SPEC = REPO / "trials" / "pm25-collocation.yaml"
EXIT_MEANING = {0: "pass", 1: "fail", 2: "usage", 3: "rig fault", 130: "aborted"}


@dataclass
class RunResult:
    """One ``labctl run`` as the benchmark saw it."""

    n: int
    sink: str
    wall_s: float
    exit_code: int
    record: dict[str, Any] | None
    tsdb_points: int | None = None
    sim_dropped: int | None = None
    """Samples the simulated devices discarded (buffer full): a loaded machine shows here."""
    error: str = ""

    @property
    def ok(self) -> bool:
        """A verdict was reached (pass or fail); anything else is not a timing."""
        return self.exit_code in (0, 1) and self.record is not None


def labctl_command() -> list[str]:
    """The ``labctl`` entry point of this interpreter's environment."""
    exe = Path(sys.executable).parent / "labctl"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "labctl.cli.main"]


def run_once(
    n: int, spec: Path, work: Path, sink: str, config: Path | None, timeout: float
) -> RunResult:
    data_dir = work / f"data-{sink}-{n}"
    data_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABCTL_")}
    env["LABCTL_DATA_DIR"] = str(data_dir)
    if config is not None:
        env["LABCTL_CONFIG"] = str(config)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [*labctl_command(), "run", str(spec), "--json", "--quiet"],
            cwd=data_dir,  # no stray ./labctl.yaml is picked up
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return RunResult(n, sink, time.monotonic() - t0, -1, None, error=f"timeout {timeout} s")
    wall = time.monotonic() - t0
    record = None
    error = ""
    try:
        record = json.loads(proc.stdout)
    except ValueError:
        error = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
    result = RunResult(n, sink, wall, proc.returncode, record, error=error)
    if record is not None:
        stats = data_dir / "runs" / record["id"] / "sim-stats.json"
        with contextlib.suppress(OSError, ValueError):
            result.sim_dropped = sum(d["dropped"] for d in json.loads(stats.read_text()).values())
    return result


def influx_points(server: Any, run_id: str) -> int:
    rows = server.query(f"SELECT count(pm25) FROM telemetry WHERE run = '{run_id}'")
    return int(rows[0]["count"]) if rows else 0


def row_cells(r: RunResult) -> list[str]:
    rec = r.record or {}
    counters = rec.get("counters", {})
    sinks = rec.get("sinks", [])
    verdict = rec.get("status", EXIT_MEANING.get(r.exit_code, f"exit {r.exit_code}"))
    sink_state = ""
    if sinks:
        s = sinks[0]
        state = "caught up" if s["caught_up"] else "BEHIND"
        sink_state = f"{s['points_written']:,} written, {state}"
    return [
        str(r.n),
        r.sink,
        fmt_s(r.wall_s),
        fmt_s(rec["ended_at"] - rec["started_at"]) if rec else "-",
        f"{counters['readings']:,}" if counters else "-",
        f"{counters['readings_evaluated']:,}" if counters else "-",
        verdict + (f" ({r.error})" if r.error else ""),
        f"{r.exit_code}",
        "-" if r.sim_dropped is None else f"{r.sim_dropped:,}",
        "-" if r.tsdb_points is None else f"{r.tsdb_points:,}",
        sink_state or "-",
    ]


def summary(label: str, results: list[RunResult]) -> tuple[str, bool]:
    good = [r.wall_s for r in results if r.ok]
    med = median(good)
    if med is None:
        return f"{label}: no run reached a verdict", False
    met = med < TARGET_S and len(good) == len(results)
    spread = f"min {min(good):.2f} s, max {max(good):.2f} s"
    return (
        f"{label}: median {med:.2f} s over {len(good)} run(s) ({spread}) vs target "
        f"< {TARGET_S:g} s: {'MET' if met else 'NOT MET'}",
        met,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    ap.add_argument("--influx", action="store_true", help="also run with an influxd 1.6 sink")
    ap.add_argument("--influx-only", action="store_true", help="only the influxd sink runs")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per run")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    spec = args.spec.resolve()
    work = Path(tempfile.mkdtemp(prefix="labctl-bench-trial-"))
    started = load_note()
    results: dict[str, list[RunResult]] = {}
    try:
        if not args.influx_only:
            results["spool"] = []
            for n in range(1, args.runs + 1):
                print(f"run {n}/{args.runs} (spool only) …", file=sys.stderr, flush=True)
                results["spool"].append(run_once(n, spec, work, "spool", None, args.timeout))
        if args.influx or args.influx_only:
            results["influxd"] = run_influx(args.runs, spec, work, args.timeout)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"Trial: {spec.relative_to(REPO) if spec.is_relative_to(REPO) else spec}")
    print(f"Machine: {started} at start; {load_note()} at end")
    print("Wall s: the labctl subprocess from exec to exit (start to verdict, record written);")
    print("record s: ended_at - started_at inside the run record.")
    print()
    all_rows = [r for rs in results.values() for r in rs]
    print(
        table(
            [
                "run",
                "sink",
                "wall s",
                "record s",
                "readings",
                "evaluated",
                "verdict",
                "exit",
                "sim dropped",
                "TSDB points",
                "sink state",
            ],
            [row_cells(r) for r in all_rows],
            [True, False, True, True, True, True, False, True, True, True, False],
        )
    )
    print()
    for r in all_rows:
        message = (r.record or {}).get("message") or r.error
        if not r.ok and message:
            print(f"run {r.n} ({r.sink}) {r.record['status'] if r.record else 'error'}: {message}")
    code = 0
    for name, rs in results.items():
        line, met = summary("labctl run" + (" + influxd 1.6 sink" if name == "influxd" else ""), rs)
        print(line)
        code |= 0 if met else 1
    for r in all_rows:
        rec = r.record or {}
        readings = rec.get("counters", {}).get("readings")
        if r.tsdb_points is not None and readings is not None and r.tsdb_points != readings:
            print(
                f"run {r.n} ({r.sink}): influxd holds {r.tsdb_points:,} of {readings:,} "
                "readings: LOSS"
            )
            code |= 2
    return code


def run_influx(runs: int, spec: Path, work: Path, timeout: float) -> list[RunResult]:
    from tests.tsdb import INFLUXD, InfluxServer

    binary = shutil.which("influxd") or INFLUXD
    server = InfluxServer(work / "influxd", binary)
    out: list[RunResult] = []
    server.start()
    try:
        server.execute(f'CREATE DATABASE "{server.database}"')
        config = work / "labctl.yaml"
        config.write_text(
            "metrics:\n"
            "  influx:\n"
            f'    - {{name: influx1, api: v1, url: "{server.url}", '
            f"database: {server.database}}}\n"
        )
        for n in range(1, runs + 1):
            print(f"run {n}/{runs} (influxd sink) …", file=sys.stderr, flush=True)
            r = run_once(n, spec, work, "influxd", config, timeout)
            if r.record is not None:
                r.tsdb_points = influx_points(server, r.record["id"])
            out.append(r)
    finally:
        server.stop()
    return out


if __name__ == "__main__":
    sys.exit(main())
