#!/usr/bin/env python3
"""Command latency at 400 lamppost nodes: ``set_level`` to every node, in rounds.

Everything on loopback with a fresh private Mosquitto per scenario:

* the controller — the real runtime (``open_runtime``) in its own process
  (``tests/lamppost_controller.py``): once every node is online and after a warm-up, it sends
  ``set_level`` to all N nodes concurrently through ``CommandClient`` (request → ``accepted``
  → ``succeeded``, matched by the edge), waits for the whole round, pauses, and repeats;
  ``--concurrency K`` sends each round in waves of K commands instead;
* ``python -m labctl_sim --preset lampposts-scale --lampposts N --speed 1``, streaming
  telemetry at 1 Hz from every node throughout.

Latency is ``CommandOutcome.latency_s``: request published → final response taken off the
socket by the controller. Success = ``succeeded`` before the deadline (``--timeout``).

With ``--conditions``, a second scenario runs under network conditions the way a trial sets
them (retained on ``lab/v1/_sim/sim/conditions``; the simulator applies them to every node):
default 100 ± 20 ms delay and 5 % loss, which delays every response and loses 5 % of the
final ones (those commands end in a timeout).

Run: ``.venv/bin/python benchmarks/lamppost_commands.py [--nodes 400 --rounds 10
--conditions --concurrency 0]``. Exit status 0 when the clean scenario's success rate is
100 %, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import load_note, table, use_repo_imports

use_repo_imports()

import aiomqtt  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

from labctl.bus.broker import PrivateBroker  # noqa: E402
from labctl.trial.conditions import sim_conditions_topic  # noqa: E402
from tests.lamppost_controller import CommandPlan, ControllerProcess, Simulator  # noqa: E402


@dataclass
class Scenario:
    name: str
    conditions: dict[str, float]


@dataclass
class Result:
    scenario: Scenario
    nodes: int
    sent: int
    succeeded: int
    accepted: int
    timeouts: int
    latency_ms: dict[str, float]
    round_p50_ms: list[float]
    issue_ms: float
    """Median over rounds of the time the controller took to publish the round's requests."""
    ctl_cpu_pct: float
    sim_cpu_pct: float
    dropped_by_network: int


async def _set_conditions(broker: PrivateBroker, conditions: dict[str, float]) -> None:
    """Publish the rig's network conditions as a trial's ``stimulus`` step does (retained)."""
    async with aiomqtt.Client(broker.host, broker.port, identifier="bench-conditions") as c:
        await c.publish(sim_conditions_topic("sim"), json.dumps(conditions), qos=1, retain=True)


def run(scenario: Scenario, nodes: int, plan: CommandPlan) -> Result:
    """One scenario, in a temporary directory removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="lamppost-commands-"))
    try:
        return _measure(root, scenario, nodes, plan)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _measure(root: Path, scenario: Scenario, nodes: int, plan: CommandPlan) -> Result:
    broker = PrivateBroker(root / "broker")
    broker.start()
    if scenario.conditions:
        asyncio.run(_set_conditions(broker, scenario.conditions))
    ctl = ControllerProcess(root / "ctl", broker.host, broker.port, commands=plan)
    sim: Simulator | None = None
    try:
        ctl.wait_for("ready", 60)
        sim = Simulator(broker.host, broker.port, nodes, root / "sim-stats.json")
        sim.wait_online(180)
        start = ctl.wait_for("commands-start", 120)
        procs = {"controller": psutil.Process(ctl.pid), "simulator": psutil.Process(sim.pid)}
        before = {k: sum(p.cpu_times()[:2]) for k, p in procs.items()}
        t0 = time.monotonic()
        budget = plan.rounds * (plan.timeout_s + plan.gap_s + 5) + 30
        done = ctl.wait_for("commands", budget)
        elapsed = time.monotonic() - t0
        cpu = {k: 100 * (sum(p.cpu_times()[:2]) - before[k]) / elapsed for k, p in procs.items()}
        sim_stats = sim.stop()
    finally:
        if sim is not None and sim.proc.poll() is None:
            sim.stop()
        ctl.stop()
        broker.stop()
    assert start["nodes"] == nodes, start
    outcomes = done["outcomes"]
    ok = [o for o in outcomes if o[2] == "succeeded"]
    lat = np.array([o[4] for o in ok]) * 1000.0
    rounds = sorted({o[0] for o in outcomes})
    return Result(
        scenario=scenario,
        nodes=nodes,
        sent=len(outcomes),
        succeeded=len(ok),
        accepted=sum(1 for o in outcomes if o[3]),
        timeouts=sum(1 for o in outcomes if o[2] == "timeout"),
        latency_ms={q: float(np.percentile(lat, int(q[1:]))) for q in ("p50", "p95", "p99")}
        | {"max": float(lat.max()), "min": float(lat.min())},
        round_p50_ms=[
            float(np.median([o[4] * 1000.0 for o in ok if o[0] == n] or [np.nan]))
            for n in rounds
        ],
        issue_ms=float(np.median([max(o[5] for o in outcomes if o[0] == n) for n in rounds]))
        * 1000.0,
        ctl_cpu_pct=cpu["controller"],
        sim_cpu_pct=cpu["simulator"],
        dropped_by_network=sum(int(s["responses_dropped_network"]) for s in sim_stats.values()),
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--gap", type=float, default=1.0, help="seconds between rounds")
    ap.add_argument("--timeout", type=float, default=5.0, help="command timeout, seconds")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds after all are online")
    ap.add_argument("--concurrency", type=int, default=0,
                    help="commands in flight at once within a round (0: all nodes)")
    ap.add_argument("--conditions", action="store_true",
                    help="also run under delay/jitter/loss (see --delay-ms …)")
    ap.add_argument("--delay-ms", type=float, default=100.0)
    ap.add_argument("--jitter-ms", type=float, default=20.0)
    ap.add_argument("--loss-pct", type=float, default=5.0)
    args = ap.parse_args()
    plan = CommandPlan(args.nodes, args.warmup, args.rounds, args.gap, args.timeout,
                       args.concurrency)
    scenarios = [Scenario("clean link", {})]
    if args.conditions:
        cond = {"delay_ms": args.delay_ms, "jitter_ms": args.jitter_ms, "loss_pct": args.loss_pct}
        scenarios.append(Scenario(
            f"{args.delay_ms:g}±{args.jitter_ms:g} ms, {args.loss_pct:g} % loss", cond
        ))
    note = load_note()
    results = [run(s, args.nodes, plan) for s in scenarios]
    at_once = f"{args.concurrency} at a time" if args.concurrency else "all at once"
    print(f"set_level to {args.nodes} lamppost nodes, {at_once}, × {args.rounds} rounds "
          f"({args.gap:g} s apart, timeout {args.timeout:g} s) while every node streams 1 Hz "
          f"telemetry; {note} at start, {load_note()} at end")
    rows = [
        [r.scenario.name, f"{r.sent:,}", f"{r.succeeded / r.sent:.2%}", f"{r.timeouts}",
         f"{r.latency_ms['p50']:.0f}", f"{r.latency_ms['p95']:.0f}",
         f"{r.latency_ms['p99']:.0f}", f"{r.latency_ms['max']:.0f}",
         f"{r.ctl_cpu_pct:.0f}", f"{r.sim_cpu_pct:.0f}"]
        for r in results
    ]
    print(table(
        ["scenario", "commands", "succeeded", "timeouts", "p50 ms", "p95 ms", "p99 ms",
         "max ms", "ctl CPU %", "sim CPU %"],
        rows, [False] + [True] * 9,
    ))
    for r in results:
        per_round = ", ".join(f"{x:.0f}" for x in r.round_p50_ms)
        print(f"{r.scenario.name}: p50 per round (ms) {per_round}; requests of a round "
              f"published within {r.issue_ms:.0f} ms (median); accepted {r.accepted:,}; "
              f"final responses the network conditions lost: {r.dropped_by_network}")
    clean = results[0]
    return 0 if clean.succeeded == clean.sent else 1


if __name__ == "__main__":
    sys.exit(main())
