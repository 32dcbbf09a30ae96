"""Network conditions set the way a trial sets them, through a real Mosquitto.

The controller's runtime publishes the conditions with :class:`RigConditions` (retained, on
``lab/v1/_sim/{rig}/conditions``, as the trial runner does for ``stimulus: {set: …}``); the
fleet's conditions listener applies them; the effect is observed where the lab observes it:
seq gaps in the readings the controller accepted, and command latency through the
``lamppost`` driver over ``CommandClient``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest
from labctl_drivers.lamppost import Lamppost
from labctl_sim.device import DeviceClock, DeviceOptions, Endpoint
from labctl_sim.lamppost.fleet import LamppostFleet
from labctl_sim.lamppost.network import CLEAR, NetworkConditions, NetworkLink, SharedConditions
from labctl_sim.lamppost.node import LamppostNode
from labctl_sim.lamppost.spec import LamppostSpec
from labctl_sim.world import World
from scipy import stats

from labctl.bus.broker import PrivateBroker
from labctl.bus.edge import EdgeResult
from labctl.config import load_settings
from labctl.readings import DeviceRef, Reading
from labctl.rig.reservations import Reservations
from labctl.rig.runtime import RigRuntime, open_runtime
from labctl.trial.conditions import RigConditions
from tests.polling import wait_for

pytestmark = pytest.mark.integration

SEED = 11


@dataclass
class Lab:
    rt: RigRuntime
    fleet: LamppostFleet
    conditions: RigConditions
    readings: list[Reading] = field(default_factory=list)

    @property
    def node(self) -> LamppostNode:
        return self.fleet.nodes[0]

    async def set(self, **conditions: float) -> None:
        """Impose conditions as the trial runner does; return once the simulator has them."""
        await self.conditions.apply(conditions)
        want = NetworkConditions(**{k: float(v) for k, v in self.conditions.applied.items()})
        await wait_for(lambda: self.fleet.conditions.current == want, f"conditions {want}")

    async def clear(self) -> None:
        await self.conditions.clear()
        await wait_for(lambda: self.fleet.conditions.current == CLEAR, "conditions cleared")


@asynccontextmanager
async def lab(broker: PrivateBroker, tmp_path: Path, *, speed: float) -> AsyncIterator[Lab]:
    settings = load_settings(
        data_dir=tmp_path,
        controller="ctl-cond",
        broker={"mode": "external", "host": broker.host, "port": broker.port},
    )
    spec = LamppostSpec(vendor="acme", id="lp-1", model="LP-60", serial="LP1")
    async with open_runtime(settings, Reservations()) as rt:
        start = time.time()
        world = World(SEED, start, 2 * 86400)
        fleet = LamppostFleet(
            [spec], world, DeviceClock.starting_now(start, speed),
            Endpoint(broker.host, broker.port), seed=SEED, span_s=world.span_s,
            options=DeviceOptions(flush_timeout_s=2.0, backoff_max_s=0.5),
        )
        out = Lab(rt, fleet, RigConditions(rt.bus.publish, settings.rig.name, simulated=True))
        assert settings.rig.name == "sim"

        def collect(result: EdgeResult) -> None:
            out.readings.extend(result.readings)

        rt.controller.listeners.append(collect)
        stop = asyncio.Event()
        task = asyncio.create_task(fleet.run(stop))
        try:
            ref = DeviceRef("acme", "lp-1")
            await wait_for(
                lambda: (rec := rt.directory.get(ref)) is not None and rec.state == "online",
                "node online",
            )
            yield out
        finally:
            await out.conditions.clear()
            stop.set()
            await asyncio.wait_for(task, 15)


async def test_loss_conditions_make_seq_gaps_at_that_rate(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    # Speed 200: 200 one-second samples per real second, so a rate is measurable quickly.
    async with lab(broker, tmp_path, speed=200.0) as lb:
        node = lb.node
        await wait_for(lambda: node.model.produced > 100, "samples before the loss")
        await lb.set(loss_pct=50)
        k0 = node.model.produced  # every sample from here on was taken under 50 % loss
        await wait_for(lambda: node.model.produced >= k0 + 600, "samples under loss")
        k1 = node.model.produced  # …up to here (before the lab clears them)
        await lb.clear()
        k2 = node.model.produced
        await wait_for(lambda: node.model.produced >= k2 + 200, "samples after clearing")
        k3 = node.model.produced
        await wait_for(lambda: any(r.seq >= k3 - 1 for r in lb.readings), "delivery")

    sessions = {r.session for r in lb.readings}
    assert len(sessions) == 1  # one session: seq == sample index
    seqs = {r.seq for r in lb.readings}
    assert len(seqs) == len(lb.readings)
    missing = [k for k in range(k0, k1) if k not in seqs]
    rate = len(missing) / (k1 - k0)
    # About half (an exact binomial test, scipy) …
    assert 0.4 < rate < 0.6 and stats.binomtest(len(missing), k1 - k0, 0.5).pvalue > 1e-3
    # … and exactly the ones the seed says, so a run can be repeated.
    predicted = NetworkLink(SharedConditions(NetworkConditions(loss_pct=50)), SEED, "acme/lp-1")
    assert missing == [k for k in range(k0, k1) if predicted.lost(k)]
    # No gap before the loss was set or after it was cleared.
    assert all(k in seqs for k in range(0, 100))
    assert all(k in seqs for k in range(k2, k3))
    assert node.stats.lost_network == (max(seqs) + 1) - len(seqs)


async def test_delay_shows_in_command_latency_and_data_latency(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    # Speed 1: device time is the wall clock, so data latency = arrival − device time stamp.
    async with lab(broker, tmp_path, speed=1.0) as lb:
        lamp = Lamppost(lb.rt.commands, DeviceRef("acme", "lp-1"), timeout_s=5)

        async def latencies(n: int) -> list[float]:
            out = []
            for level in range(n):
                outcome = await lamp.set_level(10 + level)
                assert outcome.status == "succeeded" and outcome.accepted
                out.append(outcome.latency_s)
            return out

        before = await latencies(4)
        await wait_for(lambda: len(lb.readings) >= 2, "telemetry")
        n_before = len(lb.readings)
        await lb.set(delay_ms=300)
        with_delay = await latencies(4)
        await lb.set(delay_ms=300, jitter_ms=100)
        t_jitter = time.time()  # samples stamped after this travelled with the jitter
        with_jitter = await latencies(5)
        await wait_for(lambda: any(r.ts > t_jitter + 1.5 for r in lb.readings), "late samples")

    # The node answers in ~20 ms (its command latency) plus a few ms of transport: no
    # Nagle stall (40 ms) at the controller, the broker or the node. 300 ms of delay adds
    # 300 ms to every command.
    assert statistics.median(before) < 0.035 and max(before) < 0.15
    assert all(0.3 <= x < 0.3 + 0.15 for x in with_delay)
    assert statistics.median(with_delay) - statistics.median(before) == pytest.approx(0.3, abs=0.06)
    assert all(0.2 <= x < 0.4 + 0.15 for x in with_jitter) and len(set(with_jitter)) > 1
    # Telemetry: arrival − device time stamp grows by the delay too.
    data_before = [r.received_ns / 1e9 - r.ts for r in lb.readings[:n_before]]
    data_jitter = [r.received_ns / 1e9 - r.ts for r in lb.readings if r.ts > t_jitter]
    assert max(data_before) < 0.15
    assert data_jitter and all(0.2 <= x < 0.4 + 0.15 for x in data_jitter)


async def test_start_now_puts_device_time_on_the_wall_clock(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    """``labctl_sim --start now --speed 1``: time stamps are wall-clock times, to the
    millisecond, however long the process took to start (so latency can be measured)."""
    import orjson

    preset = tmp_path / "one.json"
    preset.write_text(
        '{"name": "one", "lampposts": [{"vendor": "acme", "id": "lp-1", "model": "LP-60", '
        '"serial": "LP1"}]}'
    )
    lags: list[float] = []
    async with aiomqtt.Client(broker.host, broker.port, identifier="t-clock") as c:
        await c.subscribe("lab/v1/acme/lp-1/telemetry/+", qos=1)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "labctl_sim", "--host", broker.host, "--port",
            str(broker.port), "--preset", str(preset), "--speed", "1", "--start", "now",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(15):
                async for m in c.messages:
                    assert isinstance(m.payload, bytes)
                    for s in orjson.loads(m.payload)["samples"]:
                        lags.append(time.time() - s["ts"])
                    if len(lags) >= 3:
                        break
        finally:
            proc.terminate()
            await proc.wait()
    # Sampled, published, delivered on loopback: a few ms; never before it was stamped.
    assert len(lags) >= 3 and all(-0.005 < lag < 0.1 for lag in lags), lags
