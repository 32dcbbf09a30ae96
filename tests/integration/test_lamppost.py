"""Simulated lamppost nodes through a real Mosquitto and the controller's real runtime.

Commands go through ``labctl``'s ``CommandClient`` (the runtime's, fed by the edge) and the
``lamppost`` driver's API; nodes run in the test's event loop as a ``LamppostFleet``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import numpy as np
import orjson
import pytest
from labctl_drivers.lamppost import Lamppost
from labctl_sim.device import DeviceClock, DeviceOptions, Endpoint
from labctl_sim.lamppost.fleet import LamppostFleet
from labctl_sim.lamppost.node import LamppostNode
from labctl_sim.lamppost.power import LuminaireParams, active_power
from labctl_sim.lamppost.spec import FaultParams, LamppostSpec, Outage
from labctl_sim.world import World

from labctl.bus.broker import PrivateBroker
from labctl.bus.edge import EdgeResult
from labctl.config import load_settings
from labctl.protocol import topics
from labctl.protocol.payloads import CommandRequest, State
from labctl.readings import DeviceRef, Reading
from labctl.rig.reservations import Reservations
from labctl.rig.runtime import RigRuntime, open_runtime
from tests.polling import wait_for

pytestmark = pytest.mark.integration

LUMINAIRE = LuminaireParams(rated_w=60.0, standby_w=1.2)


def _spec(node_id: str, **kw: object) -> LamppostSpec:
    base: dict[str, object] = {
        "vendor": "acme", "id": node_id, "model": "LP-60", "serial": node_id.upper(),
        "luminaire": LUMINAIRE, "reboot_s": 1.0,
    }
    base.update(kw)
    return LamppostSpec.model_validate(base)


@dataclass
class Lab:
    rt: RigRuntime
    fleet: LamppostFleet
    readings: list[Reading] = field(default_factory=list)

    def node(self, node_id: str) -> LamppostNode:
        return next(n for n in self.fleet.nodes if n.spec.id == node_id)

    def lamp(self, node_id: str) -> Lamppost:
        return Lamppost(self.rt.commands, DeviceRef("acme", node_id))

    def online(self, node_id: str) -> bool:
        rec = self.rt.directory.get(DeviceRef("acme", node_id))
        return rec is not None and rec.state == "online"

    def session(self, node_id: str) -> str | None:
        rec = self.rt.directory.get(DeviceRef("acme", node_id))
        return None if rec is None else rec.session


@asynccontextmanager
async def lab(
    broker: PrivateBroker, tmp_path: Path, *specs: LamppostSpec, speed: float = 1.0
) -> AsyncIterator[Lab]:
    settings = load_settings(
        data_dir=tmp_path,
        controller="ctl-lamp",
        broker={"mode": "external", "host": broker.host, "port": broker.port},
    )
    async with open_runtime(settings, Reservations()) as rt:
        start = time.time()
        world = World(11, start, 2 * 86400)
        fleet = LamppostFleet(
            specs, world, DeviceClock.starting_now(start, speed),
            Endpoint(broker.host, broker.port), seed=11, span_s=world.span_s,
            options=DeviceOptions(flush_timeout_s=2.0, backoff_max_s=0.5),
        )
        out = Lab(rt, fleet)

        def collect(result: EdgeResult) -> None:
            out.readings.extend(result.readings)

        rt.controller.listeners.append(collect)
        stop = asyncio.Event()
        task = asyncio.create_task(fleet.run(stop))
        try:
            await wait_for(lambda: all(out.online(s.id) for s in specs), "nodes online")
            yield out
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


async def test_set_level_succeeds_and_bad_requests_are_rejected(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    async with lab(broker, tmp_path, _spec("lp-1")) as lb:
        lamp = lb.lamp("lp-1")
        ok = await lamp.set_level(60, timeout_s=5)
        assert (ok.status, ok.accepted) == ("succeeded", True)
        assert ok.result == {"level": 60, "mode": "manual"} and 0 < ok.latency_s < 2
        status = await lamp.get_status(timeout_s=5)
        assert status.status == "succeeded" and status.result is not None
        assert status.result["level"] == 60 and status.result["session"] == lb.session("lp-1")

        # Past the driver (which would refuse it): the node itself rejects level 150.
        dev = DeviceRef("acme", "lp-1")
        bad = await lb.rt.commands.send(dev, "set_level", {"level": 150}, timeout_s=5)
        assert bad.status == "rejected" and not bad.accepted
        assert bad.error is not None and bad.error.startswith("bad_params:")
        assert "less than or equal to 100" in bad.error
        unknown = await lb.rt.commands.send(dev, "fly", {}, timeout_s=5)
        assert unknown.status == "rejected" and (unknown.error or "").startswith("unknown_op:")

        # A schedule (two halves of the day at 35 %) takes over from the manual level.
        halves = [{"from": "00:00", "to": "12:00", "level": 35},
                  {"from": "12:00", "to": "00:00", "level": 35}]
        sched = await lamp.set_schedule(halves, lat=22.3, lon=114.17, timeout_s=5)
        assert sched.status == "succeeded" and sched.result is not None
        assert sched.result["mode"] == "schedule" and sched.result["level"] == 35
        assert 0 < sched.result["dusk"] - sched.result["dawn"] < 86400  # today's sun times
        assert (await lamp.set_level(60, timeout_s=5)).status == "succeeded"

        # The level reached the luminaire: telemetry says 60 % and the matching power.
        await wait_for(lambda: sum(r.values["level"] == 60 for r in lb.readings) >= 2, "60 %")
        at60 = [r.values["power"] for r in lb.readings if r.values["level"] == 60]
        assert np.mean(at60) == pytest.approx(float(active_power(60, LUMINAIRE)), rel=0.02)
        assert lb.node("lp-1").stats.executed == 4 and lb.node("lp-1").stats.rejected == 2


async def test_command_delay_beyond_the_timeout_ends_in_timeout_and_a_late_response(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    slow = _spec("lp-slow", faults=FaultParams(command_delay_s=1.2))
    async with lab(broker, tmp_path, slow) as lb:
        lamp = lb.lamp("lp-slow")
        out = await lamp.set_level(30, timeout_s=0.5)
        assert out.status == "timeout" and out.accepted  # acknowledged, then too slow
        assert out.latency_s == pytest.approx(0.5, abs=0.05)
        cmd = lb.rt.commands
        await wait_for(lambda: cmd.stats.late >= 1, "the late response")
        assert cmd.stats.late == 1 and out.id in cmd.stats.late_ids
        # Logged, not applied: the outcome stays a timeout, also when asked again by id.
        again = await lamp.set_level(30, timeout_s=5, command_id=out.id)
        assert again.status == "timeout" and again == out
        # The node did carry it out (the lab decides what a late success is worth).
        status = await lamp.get_status(timeout_s=5)
        assert status.status == "succeeded" and status.result is not None
        assert status.result["level"] == 30


async def test_a_node_whose_clock_runs_ahead_ignores_requests_it_thinks_expired(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    ahead = _spec("lp-ahead", faults=FaultParams(clock_skew_s=30.0))
    async with lab(broker, tmp_path, ahead, _spec("lp-ok")) as lb:
        out = await lb.lamp("lp-ahead").set_level(40, timeout_s=1.0)
        assert out.status == "timeout" and not out.accepted
        assert lb.node("lp-ahead").stats.expired == 1
        assert lb.node("lp-ahead").stats.executed == 0
        # With a deadline beyond the skew it works; the honest node is unaffected either way.
        assert (await lb.lamp("lp-ahead").set_level(40, timeout_s=35)).status == "succeeded"
        assert (await lb.lamp("lp-ok").set_level(40, timeout_s=1.0)).status == "succeeded"


async def test_a_repeated_command_id_is_answered_again_but_executed_once(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    async with lab(broker, tmp_path, _spec("lp-dup")) as lb:
        lamp = lb.lamp("lp-dup")
        res_topic = topics.command_response("acme", "lp-dup", "dup-1")
        seen: list[bytes] = []
        async with aiomqtt.Client(broker.host, broker.port, identifier="t-dup") as raw:
            await raw.subscribe(res_topic, qos=1)

            async def listen() -> None:
                async for m in raw.messages:
                    assert isinstance(m.payload, bytes)
                    seen.append(m.payload)

            listener = asyncio.create_task(listen())
            first = await lamp.set_level(70, timeout_s=5, command_id="dup-1")
            assert first.status == "succeeded"
            before = lb.node("lp-dup").model.executed
            # The same request again on the wire (as a retrying lab or a broker redelivery
            # would): the CommandClient never sends an id twice, so publish it directly.
            req = CommandRequest(id="dup-1", op="set_level", params={"level": 70},
                                 deadline=time.time() + 5)
            await raw.publish(topics.command_request("acme", "lp-dup", "dup-1"),
                              orjson.dumps(req.model_dump(mode="json")), qos=1)
            await wait_for(lambda: len(seen) >= 3, "the repeated answer")
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        statuses = [orjson.loads(p)["status"] for p in seen]
        assert statuses == ["accepted", "succeeded", "succeeded"]
        assert seen[1] == seen[2]  # the same final response, byte for byte
        node = lb.node("lp-dup")
        assert node.stats.duplicates == 1 and node.model.executed == before
        # The controller had finished that id: the repeat is counted late and not applied.
        await wait_for(lambda: lb.rt.commands.stats.late == 1, "late count")
        status = await lamp.get_status(timeout_s=5)
        assert status.result is not None and status.result["executed"] == before + 1


async def test_set_level_right_after_a_reboot_times_out_and_the_node_returns(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    async with lab(broker, tmp_path, _spec("lp-rb", initial_level=10)) as lb:
        lamp = lb.lamp("lp-rb")
        assert (await lamp.set_level(90, timeout_s=5)).status == "succeeded"
        old = lb.session("lp-rb")
        assert old is not None
        rebooted = await lamp.reboot(timeout_s=5)
        assert rebooted.status == "succeeded" and rebooted.result == {"reboot_s": 1.0}
        # Sent while the node shuts down or is away: never answered (no broker session).
        lost = await lamp.set_level(50, timeout_s=0.8)
        assert lost.status == "timeout" and not lost.accepted
        await wait_for(lambda: lb.online("lp-rb") and lb.session("lp-rb") != old, "new session")
        status = await lamp.get_status(timeout_s=5)
        assert status.status == "succeeded" and status.result is not None
        r = status.result
        assert r["session"] == lb.session("lp-rb") != old
        assert r["reboots"] == 1 and r["level"] == 10 and r["mode"] == "manual"  # override gone
        assert r["seq"] < 10 and r["energy_kwh"] < 1e-4  # seq from 0, energy register reset
        assert (await lamp.set_level(50, timeout_s=5)).status == "succeeded"
        # The new session's telemetry starts at seq 0.
        new = lb.session("lp-rb")
        await wait_for(lambda: any(x.session == new for x in lb.readings), "new telemetry")
        assert min(x.seq for x in lb.readings if x.session == new) == 0


async def test_wrong_level_fault_shows_only_in_power(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    healthy, faulty = _spec("lp-good"), _spec("lp-bad", faults=FaultParams(wrong_level_factor=0.7))
    async with lab(broker, tmp_path, healthy, faulty) as lb:
        for node_id in ("lp-good", "lp-bad"):
            assert (await lb.lamp(node_id).set_level(80, timeout_s=5)).status == "succeeded"

        def at80(node_id: str) -> list[float]:
            return [r.values["power"] for r in lb.readings
                    if r.device.device == node_id and r.values["level"] == 80]

        await wait_for(lambda: len(at80("lp-good")) >= 3 and len(at80("lp-bad")) >= 3, "samples")
        good, bad = np.mean(at80("lp-good")), np.mean(at80("lp-bad"))
        assert good == pytest.approx(float(active_power(80, LUMINAIRE)), rel=0.02)
        assert bad == pytest.approx(float(active_power(56, LUMINAIRE)), rel=0.02)
        assert good - bad > 10.0  # both say 80 %; only the meter tells them apart


async def test_outage_publishes_lost_and_store_and_forward_uploads_the_gap(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    # Speed 20: the outage from device second 40 to 80 is 2 s of real time.
    outage = (Outage(at_s=40, for_s=40),)
    keep = _spec("lp-keep", faults=FaultParams(outages=outage))
    drop = _spec("lp-drop", faults=FaultParams(outages=outage, store_and_forward=False))
    lossy = _spec("lp-lossy", faults=FaultParams(message_loss_p=0.2))
    states: list[tuple[str, State]] = []
    async with aiomqtt.Client(broker.host, broker.port, identifier="t-state") as raw:
        await raw.subscribe("lab/v1/acme/+/state", qos=1)

        async def listen() -> None:
            async for m in raw.messages:
                assert isinstance(m.payload, bytes)
                states.append((m.topic.value.split("/")[3], State.model_validate_json(m.payload)))

        listener = asyncio.create_task(listen())
        async with lab(broker, tmp_path, keep, drop, lossy, speed=20.0) as lb:
            await wait_for(lambda: all(n.stats.connects >= 2 for n in lb.fleet.nodes[:2]),
                           "reconnects after the outage", timeout=10)
            clock = lb.fleet.nodes[0].clock
            await wait_for(lambda: clock.now() - clock.start > 110, "device time past 110 s")
            nodes = {n.spec.id: n for n in lb.fleet.nodes}
            await wait_for(lambda: all(n.buffered == 0 for n in nodes.values()), "delivery")
            await asyncio.sleep(0.3)
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener

    def seen(node_id: str) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for r in lb.readings:
            if r.device.device == node_id:
                out.setdefault(r.session, []).append(r.seq)
        return {s: sorted(v) for s, v in out.items()}

    for node_id in ("lp-keep", "lp-drop"):
        kinds = [(s.state, s.session) for n, s in states if n == node_id]
        first = kinds[0][1]
        # online → lost (the broker's Last Will: the TCP connection was cut) → online, new session
        assert kinds[:3] == [("online", first), ("lost", first), ("online", kinds[2][1])]
        assert kinds[2][1] != first and nodes[node_id].stats.outages == 1

    kept, dropped = seen("lp-keep"), seen("lp-drop")
    first_keep = next(s for n, s in states if n == "lp-keep").session
    first_drop = next(s for n, s in states if n == "lp-drop").session
    # Store and forward: the first session runs without a gap through the outage (~40 s of
    # samples taken offline, uploaded afterwards).
    seqs = kept[first_keep]
    assert seqs == list(range(len(seqs))) and len(seqs) >= 75
    # Without it, the samples of the outage are gone: the first session ends when the link did.
    assert len(dropped[first_drop]) <= 45 and nodes["lp-drop"].stats.discarded_offline >= 35
    # Message loss: gaps in seq, exactly as many as the node never sent.
    lossy_seqs = seen("lp-lossy")
    (only,) = lossy_seqs.values()
    gaps = (only[-1] + 1) - len(only)
    assert gaps == nodes["lp-lossy"].stats.lost > 0


def test_labctl_sim_runs_the_lamppost_presets(broker: PrivateBroker, tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    env = {**os.environ, "LABCTL_SIM_LAMPPOSTS": "12"}
    for preset, expected in (("lampposts", 4), ("lampposts-scale", 12)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "labctl_sim", "--host", broker.host, "--port",
             str(broker.port), "--preset", preset, "--stats", str(stats)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        try:
            deadline = time.monotonic() + 15
            online = 0
            assert proc.stdout is not None
            while online < expected and time.monotonic() < deadline:
                line = proc.stdout.readline().decode()
                online += line.startswith("online ")
            assert online == expected
            time.sleep(1.5)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err.decode()[-2000:]
        stopped = [ln for ln in out.decode().splitlines() if ln.startswith("offline ")]
        assert len(stopped) == expected  # each node went offline cleanly at SIGTERM
        data = orjson.loads(stats.read_bytes())
        assert len(data) == expected
        assert all(d["published"] >= 1 and d["connects"] == 1 for d in data.values())


def test_a_simulated_lamppost_passes_labctl_vendor_check(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    """The lab's own conformance check (docs/protocol.md §12) against a node run by the CLI.

    The presence stage (stop, restart, kill) is left out to keep this test short; it passes
    too (``--stop-cmd 'kill -TERM …' --start-cmd … --kill-cmd 'kill -KILL …'``).
    """
    from labctl_sim.lamppost.presets import lamppost_specs
    from labctl_sim.models import RigPreset

    spec = lamppost_specs()[0]
    preset = tmp_path / "one-lamppost.json"
    preset.write_text(RigPreset(name="one", lampposts=(spec,)).model_dump_json(by_alias=True))
    sim = subprocess.Popen(
        [sys.executable, "-m", "labctl_sim", "--host", broker.host, "--port", str(broker.port),
         "--preset", str(preset)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABCTL_")}
    env |= {
        "LABCTL_BROKER__MODE": "external",
        "LABCTL_BROKER__HOST": broker.host,
        "LABCTL_BROKER__PORT": str(broker.port),
        "LABCTL_DATA_DIR": str(tmp_path / "data"),
    }
    try:
        check = subprocess.run(
            [sys.executable, "-m", "labctl.cli.main", "vendor", "check", spec.key, "--json",
             "--no-interactive", "--timeout", "5", "--window", "2", "--skip", "presence"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )
    finally:
        sim.send_signal(signal.SIGTERM)
        _, err = sim.communicate(timeout=20)
    report = orjson.loads(check.stdout)
    failed = {c["id"]: c["detail"] for c in report["checks"] if c["outcome"] == "fail"}
    assert check.returncode == 0, f"{failed}\n{check.stderr[-2000:]}\n{err.decode()[-2000:]}"
    outcomes = {c["id"]: c["outcome"] for c in report["checks"]}
    for required in ("manifest.noop", "manifest.republish", "telemetry.types", "telemetry.seq",
                     "command.round_trip", "command.duplicate", "command.expired",
                     "command.deadline", "messages.valid"):
        assert outcomes[required] == "pass", required
