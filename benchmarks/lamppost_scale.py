#!/usr/bin/env python3
"""CPU and memory of the lamppost simulator at scale: N nodes at 1 Hz in one process.

Everything on loopback: a private Mosquitto, optionally the real controller (``labctl
serve`` against that broker: it validates and spools every reading), and ``python -m
labctl_sim --preset lampposts-scale --lampposts N`` (each node an aiomqtt client in the
simulator's one event loop, one ``node`` telemetry message per node per second).

After every node is online and a warm-up, CPU (``psutil`` user + system time) of each process
is measured over a window; RSS at its end. The simulator's stats file (written at SIGTERM)
gives the samples the broker acknowledged and any that were dropped or left unsent.

Run: ``.venv/bin/python benchmarks/lamppost_scale.py [--nodes 400 --window 30]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import REPO, load_note, table, use_repo_imports

use_repo_imports()

from labctl.procs import terminate  # noqa: E402


def _serve(root: Path, host: str, port: int) -> subprocess.Popen[bytes]:
    import yaml

    from labctl.bus.broker import free_port
    from labctl.serve.discovery import read_info

    data = root / "data"
    config = root / "labctl.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(data),
                "controller": "ctl-lamppost-bench",
                "broker": {"mode": "external", "host": host, "port": port},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABCTL_")}
    env["LABCTL_CONFIG"] = str(config)
    log = (root / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "labctl.cli.main", "serve", "--http", f"127.0.0.1:{free_port()}"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log,
    )
    log.close()
    deadline = time.monotonic() + 30
    while read_info(data) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            terminate(proc, 30.0)
            raise RuntimeError(f"labctl serve did not start: {(root / 'serve.log').read_text()}")
        time.sleep(0.05)
    return proc


def main() -> int:
    import psutil

    from labctl.bus.broker import PrivateBroker

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=400)
    ap.add_argument("--window", type=float, default=30.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds after all are online")
    ap.add_argument("--no-controller", action="store_true", help="broker and simulator only")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="lamppost-bench-"))
    broker = PrivateBroker(root / "broker")
    broker.start()
    serve: subprocess.Popen[bytes] | None = None
    sim: subprocess.Popen[bytes] | None = None
    stats_file = root / "sim-stats.json"
    try:
        if not args.no_controller:
            serve = _serve(root, broker.host, broker.port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABCTL_")}
        t_start = time.monotonic()
        sim = subprocess.Popen(
            [sys.executable, "-m", "labctl_sim", "--host", broker.host, "--port",
             str(broker.port), "--preset", "lampposts-scale", "--lampposts", str(args.nodes),
             "--stats", str(stats_file)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        online = threading.Semaphore(0)

        def read_events() -> None:
            assert sim is not None and sim.stdout is not None
            for line in sim.stdout:
                if line.startswith(b"online "):
                    online.release()

        threading.Thread(target=read_events, daemon=True).start()
        for _ in range(args.nodes):
            if not online.acquire(timeout=120):
                raise RuntimeError("not every node came online within 120 s")
        t_online = time.monotonic() - t_start
        time.sleep(args.warmup)

        procs = {"simulator": psutil.Process(sim.pid)}
        assert broker.pid is not None
        procs["mosquitto"] = psutil.Process(broker.pid)
        if serve is not None:
            procs["controller (labctl serve)"] = psutil.Process(serve.pid)
        before = {k: p.cpu_times() for k, p in procs.items()}
        t0 = time.monotonic()
        time.sleep(args.window)
        elapsed = time.monotonic() - t0
        after = {k: p.cpu_times() for k, p in procs.items()}
        rss = {k: p.memory_info().rss for k, p in procs.items()}
        rows = []
        for k in procs:
            cpu = (after[k].user - before[k].user) + (after[k].system - before[k].system)
            rows.append(
                [k, f"{100 * cpu / elapsed:.1f}", f"{1000 * cpu / elapsed:.0f}",
                 f"{rss[k] / 2**20:.0f}"]
            )
        terminate(sim, 30.0)
        stats = json.loads(stats_file.read_text())
    finally:
        if sim is not None:
            terminate(sim, 30.0)
        if serve is not None:
            terminate(serve, 30.0)
        broker.stop()

    published = sum(int(s["published"]) for s in stats.values())
    dropped = sum(int(s["dropped"]) + int(s["unsent"]) for s in stats.values())
    outages = sum(int(s["outages"]) for s in stats.values())
    print(f"{args.nodes} lamppost nodes at 1 Hz; {load_note()}")
    print(f"all online {t_online:.1f} s after start; window {elapsed:.1f} s after "
          f"{args.warmup:g} s warm-up")
    print(table(["process", "CPU % of one core", "CPU ms/s", "RSS MiB"], rows,
                [False, True, True, True]))
    per_node_us = float(rows[0][2]) * 1000 / args.nodes
    print(f"simulator CPU per node: {per_node_us:.0f} µs/s (one sample and one QoS 1 publish "
          "per node per second)")
    print(f"samples acknowledged by the broker over the run: {published:,}; dropped or unsent: "
          f"{dropped}; injected outages: {outages}")
    return 0 if dropped == 0 else 2


if __name__ == "__main__":
    sys.exit(main())
