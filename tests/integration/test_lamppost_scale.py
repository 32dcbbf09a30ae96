"""400 lamppost nodes at 1 Hz for a minute into the real controller: nothing lost, no growth.

Real parts only: a private Mosquitto, the simulator as a child process (``python -m
labctl_sim --preset lampposts-scale --lampposts 400 --speed 1 --start now``: one aiomqtt
client per node, device time = wall time) and the controller as another (the real ingest
path — ``open_runtime``: bus, edge validation and dedupe, spool — see
:mod:`tests.lamppost_controller`), so its memory is measured from outside, clean.

Completeness is counted where the lab keeps its data: distinct ``(device, session, seq)``
telemetry points in the controller's spool, against the samples the simulator's stats say
the broker acknowledged, and against the nominal 400 samples per second of device time.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from scipy import stats

from labctl.bus.broker import PrivateBroker
from tests.lamppost_controller import ControllerProcess, Simulator, spooled_telemetry

NODES = 400
RUN_S = 90.0
"""From the moment every node is online until the simulator is stopped. Longer than the
minute the issue asks for on purpose: growth per sample hides for the first minute (seqs
below 257 are Python's cached small ints; a set of seqs keeps its 128-slot table up to 76
entries and quadruples at the 77th, ~77 s into a session). The controller's dedupe kept
every seq it had seen (~2.5 GB a day at 400 nodes) until a 3-minute run found it; a 60 s
run passes with that leak, this one fails (checked against the old code)."""
WARMUP_S = 15.0
EVERY_S = 5.0
NOMINAL_FROM_S, NOMINAL_TO_S = 5.0, 85.0
"""The window (device time after all online) checked against 400 samples per second."""

# Memory bounds. At 400 samples/s the controller sees 24,000 samples a minute, so keeping
# one small object per sample (a Python int is 28 B, plus 8 B for its slot in a container)
# grows its heap by ~0.8 MiB/min. Python's own allocations (tracemalloc, after a full
# collection) are exact to the byte and flat within ~20 kB at steady state, so 0.25 MiB/min
# (~11 B per sample) catches even that. RSS moves in steps (256 KiB pymalloc arenas, glibc
# heap growth ≥ 128 KiB), so over the ~40 s second half one step alone is ~0.4 MiB/min:
# it gets the looser 1 MiB/min.
MAX_TRACED_MIB_PER_MIN = 0.25
MAX_RSS_MIB_PER_MIN = 1.0
MIN_COMPLETENESS = 0.999


def _slope_mib_per_min(t_s: list[float], values: list[float]) -> float:
    """Least-squares slope (scipy) of bytes over seconds, in MiB per minute."""
    fit = stats.linregress(np.asarray(t_s), np.asarray(values, dtype=float))
    return float(fit.slope) * 60.0 / 2**20


def _keys(ctl: ControllerProcess) -> set[tuple[str, str, int]]:
    return {(p.device, p.session, p.seq) for p in spooled_telemetry(ctl.data_dir / "spool")}


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_400_nodes_at_1_hz_lose_nothing_and_the_controller_does_not_grow(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    ctl = ControllerProcess(tmp_path / "ctl", broker.host, broker.port, interval=EVERY_S,
                            trace_memory=True)
    sim: Simulator | None = None
    try:
        ctl.wait_for("ready", 60)
        sim = Simulator(broker.host, broker.port, NODES, tmp_path / "sim-stats.json")
        t_online = sim.wait_online(60)
        proc = psutil.Process(ctl.pid)
        spool_proc = psutil.Process(ctl.spool_pid())
        rss: list[tuple[float, int]] = []
        spool_rss: list[tuple[float, int]] = []
        for i in range(int((RUN_S - WARMUP_S) / EVERY_S) + 1):
            at = t_online + WARMUP_S + i * EVERY_S
            time.sleep(max(0.0, at - time.time()))
            rss.append((time.time() - t_online, proc.memory_info().rss))
            spool_rss.append((time.time() - t_online, spool_proc.memory_info().rss))
        sim_stats = sim.stop()
        published = sum(int(s["published"]) for s in sim_stats.values())
        # Let the controller take in what the nodes flushed at SIGTERM, then stop it.
        deadline = time.monotonic() + 20
        while len(_keys(ctl)) < published and time.monotonic() < deadline:
            time.sleep(0.5)
        ticks = ctl.events("tick")
    finally:
        if sim is not None and sim.proc.poll() is None:
            sim.stop()
        ctl.stop()

    points = list(spooled_telemetry(ctl.data_dir / "spool"))
    distinct = {(p.device, p.session, p.seq) for p in points}
    # The simulator delivered everything it produced (nothing dropped, left unsent or lost).
    for key in ("dropped", "unsent", "lost", "lost_network"):
        assert sum(int(s[key]) for s in sim_stats.values()) == 0, key
    assert len(sim_stats) == NODES
    # 1. Against what the broker acknowledged to the simulator.
    assert published >= NODES * RUN_S * 0.99
    assert len(distinct) / published >= MIN_COMPLETENESS, (len(distinct), published)
    # 2. Against the nominal rate: every node has one sample per device second, and at
    # speed 1 with --start now device time is the wall clock.
    lo, hi = t_online + NOMINAL_FROM_S, t_online + NOMINAL_TO_S
    in_window = {(p.device, p.session, p.seq) for p in points if lo <= p.ts < hi}
    nominal = NODES * (NOMINAL_TO_S - NOMINAL_FROM_S)
    assert len(in_window) / nominal >= MIN_COMPLETENESS, (len(in_window), nominal)
    assert len({p.device for p in points}) == NODES

    # No growth: the slope of a linear fit over the second half of the samples after warm-up.
    half = len(rss) // 2
    rss_slope = _slope_mib_per_min([t for t, _ in rss[half:]], [v for _, v in rss[half:]])
    spool_slope = _slope_mib_per_min(
        [t for t, _ in spool_rss[half:]], [v for _, v in spool_rss[half:]]
    )
    traced = [(e["t"], e["traced"]) for e in ticks if e["wall"] >= t_online + WARMUP_S]
    assert len(traced) >= 8
    half_t = traced[len(traced) // 2:]
    traced_slope = _slope_mib_per_min([t for t, _ in half_t], [v for _, v in half_t])
    print(
        f"\n{NODES} nodes, {RUN_S:g} s: {published} samples acknowledged, {len(distinct)} "
        f"spooled ({len(distinct) / published:.5f}), nominal window {len(in_window)}/"
        f"{nominal:g}; controller RSS {rss[-1][1] / 2**20:.1f} MiB, slope "
        f"{rss_slope:+.3f} MiB/min; Python heap slope {traced_slope:+.3f} MiB/min; spool "
        f"process RSS {spool_rss[-1][1] / 2**20:.1f} MiB, slope {spool_slope:+.3f} MiB/min"
    )
    assert traced_slope < MAX_TRACED_MIB_PER_MIN, traced
    assert rss_slope < MAX_RSS_MIB_PER_MIN, rss
    assert spool_slope < MAX_RSS_MIB_PER_MIN, spool_rss
