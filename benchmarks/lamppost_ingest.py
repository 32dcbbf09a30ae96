#!/usr/bin/env python3
"""Lamppost telemetry into the controller at 400 and 1,000 nodes × 1 Hz: latency, completeness.

Everything on loopback, each node count with a fresh private Mosquitto:

* the controller — the real ingest path (``open_runtime``: bus, edge validation and dedupe,
  spool, listeners) in a process of its own (``tests/lamppost_controller.py``), which records
  every reading's device time stamp and its arrival time (``Reading.received_ns``, stamped by
  the bus when the message is taken off the socket);
* ``python -m labctl_sim --preset lampposts-scale --lampposts N --speed 1 --start now``: one
  aiomqtt client per node, one QoS 1 message of one 11-channel sample per node per second;
  ``--start now`` starts the device clock at the wall clock, so arrival − time stamp is the
  end-to-end latency (sampling → simulator → broker → controller). The preset gives every
  10th node random outages (about one per two device hours) with store and forward: the
  samples of an outage arrive after it, seconds late, and show in the maximum (counted
  apart as "> 1 s late").

After every node is online and a warm-up, a window (default 30 s) is measured: ``psutil`` CPU
of controller, simulator and broker, RSS at its end; the latency of the readings stamped in
the window; completeness = distinct ``(device, session, seq)`` in the controller's spool
stamped in the window against the nominal N × (window − 1 s); the delivered rate = readings that
arrived in the window per second, against the offered N msgs/s (the issue's baseline: the
controller must keep up, delivered = offered).

Run: ``.venv/bin/python benchmarks/lamppost_ingest.py [--nodes 400,1000 --window 30]``.
Exit status 0 when every run kept up (delivered ≥ 99.9 % of offered, completeness ≥ 99.9 %),
1 otherwise.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import load_note, table, use_repo_imports

use_repo_imports()

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from labctl.bus.broker import PrivateBroker  # noqa: E402
from tests.lamppost_controller import (  # noqa: E402
    ControllerProcess,
    Simulator,
    spooled_telemetry,
)

KEEP_UP = 0.999


@dataclass
class Result:
    nodes: int
    window_s: float
    online_s: float
    delivered_per_s: float
    completeness: float
    spooled_vs_published: float
    latency_ms: dict[str, float]
    late: int
    """Readings that arrived more than 1 s after their time stamp (store and forward)."""
    outages: int
    """Network outages the preset's fault plans injected over the whole run."""
    cpu_pct: dict[str, float]
    rss_mib: dict[str, float]


def _cpu(procs: dict[str, psutil.Process]) -> dict[str, float]:
    return {k: p.cpu_times().user + p.cpu_times().system for k, p in procs.items()}


def run(nodes: int, window_s: float, warmup_s: float) -> Result:
    """One node count, in a temporary directory removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=f"lamppost-ingest-{nodes}-"))
    try:
        return _measure(root, nodes, window_s, warmup_s)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _measure(root: Path, nodes: int, window_s: float, warmup_s: float) -> Result:
    broker = PrivateBroker(root / "broker")
    broker.start()
    ctl = ControllerProcess(root / "ctl", broker.host, broker.port, latency=True)
    sim: Simulator | None = None
    try:
        ctl.wait_for("ready", 60)
        t_start = time.time()
        sim = Simulator(broker.host, broker.port, nodes, root / "sim-stats.json")
        t_online = sim.wait_online(180)
        time.sleep(warmup_s)
        assert broker.pid is not None
        procs = {"controller": psutil.Process(ctl.pid), "spool": psutil.Process(ctl.spool_pid()),
                 "simulator": psutil.Process(sim.pid), "mosquitto": psutil.Process(broker.pid)}
        before = _cpu(procs)
        t0 = time.time()
        time.sleep(window_s)
        t1 = time.time()
        after = _cpu(procs)
        rss = {k: p.memory_info().rss / 2**20 for k, p in procs.items()}
        sim_stats = sim.stop()
        published = sum(int(s["published"]) for s in sim_stats.values())
        spool = ctl.data_dir / "spool"
        keys: set[tuple[str, str, int, float]] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            keys = {(p.device, p.session, p.seq, p.ts) for p in spooled_telemetry(spool)}
            if len(keys) >= published:
                break
            time.sleep(0.5)
    finally:
        if sim is not None and sim.proc.poll() is None:
            sim.stop()
        ctl.stop()
        broker.stop()
    assert ctl.latency_file is not None
    data = np.load(ctl.latency_file)
    ts, arrival = data["ts"], data["arrival"]
    stamped = (ts >= t0) & (ts < t1)
    latency = (arrival[stamped] - ts[stamped]) * 1000.0
    # Whole seconds (exactly one sample per node each), ending a second before the simulator
    # was stopped so every node has taken its last sample of the window.
    whole = math.floor(t1 - t0) - 1
    nominal_keys = {(d, s, q) for d, s, q, t in keys if t0 <= t < t0 + whole}
    arrived = int(np.count_nonzero((arrival >= t0) & (arrival < t1)))
    return Result(
        nodes=nodes,
        window_s=t1 - t0,
        online_s=t_online - t_start,
        delivered_per_s=arrived / (t1 - t0),
        completeness=len(nominal_keys) / (nodes * whole),
        spooled_vs_published=len(keys) / published,
        late=int(np.count_nonzero(latency > 1000.0)),
        outages=sum(int(s["outages"]) for s in sim_stats.values()),
        latency_ms={
            "p50": float(np.percentile(latency, 50)),
            "p95": float(np.percentile(latency, 95)),
            "p99": float(np.percentile(latency, 99)),
            "max": float(latency.max()),
            "min": float(latency.min()),
        },
        cpu_pct={k: 100.0 * (after[k] - before[k]) / (t1 - t0) for k in procs},
        rss_mib=rss,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="400,1000", help="comma-separated node counts")
    ap.add_argument("--window", type=float, default=30.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds after all are online")
    args = ap.parse_args()
    note = load_note()
    results = [run(int(n), args.window, args.warmup) for n in args.nodes.split(",")]
    print(f"lamppost telemetry ingest, 1 sample per node per second (QoS 1); {note} at start, "
          f"{load_note()} at end")
    rows = [
        [f"{r.nodes:,}", f"{r.nodes:,}", f"{r.delivered_per_s:,.1f}", f"{r.completeness:.4%}",
         f"{r.latency_ms['p50']:.1f}", f"{r.latency_ms['p95']:.1f}",
         f"{r.latency_ms['p99']:.1f}", f"{r.latency_ms['max']:.0f}",
         f"{r.cpu_pct['controller']:.1f}", f"{r.rss_mib['controller']:.0f}",
         f"{r.cpu_pct['spool']:.1f}", f"{r.rss_mib['spool']:.0f}",
         f"{r.cpu_pct['simulator']:.1f}", f"{r.rss_mib['simulator']:.0f}",
         f"{r.cpu_pct['mosquitto']:.1f}"]
        for r in results
    ]
    print(table(
        ["nodes", "offered msg/s", "delivered msg/s", "complete", "p50 ms", "p95 ms", "p99 ms",
         "max ms", "ctl CPU %", "ctl RSS MiB", "spool CPU %", "spool RSS MiB", "sim CPU %",
         "sim RSS MiB", "broker CPU %"],
        rows, [True] * 15,
    ))
    ok = True
    for r in results:
        kept = r.delivered_per_s / r.nodes
        good = kept >= KEEP_UP and r.completeness >= KEEP_UP and r.spooled_vs_published >= KEEP_UP
        ok &= good
        print(f"{r.nodes:,} nodes: all online {r.online_s:.1f} s after start; window "
              f"{r.window_s:.1f} s; delivered/offered {kept:.4f}, spooled/acknowledged "
              f"{r.spooled_vs_published:.5f}, latency min {r.latency_ms['min']:.1f} ms; "
              f"{r.late} readings > 1 s late (injected outages in the run: {r.outages}) — "
              f"{'kept up' if good else 'DID NOT KEEP UP'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
