"""Serial devices on real ptys: the simulators on the master side, the controller's port and
transport on the slave side (through the stable link), no mocks."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from labctl_drivers import pms5003, sds011
from labctl_sim.device import DeviceClock
from labctl_sim.models import DeviceSpec, OpticalParams, SerialFault, SerialSim
from labctl_sim.serial_device import SerialSimDevice
from labctl_sim.world import World

from labctl.bus.edge import EdgeResult
from labctl.config import SerialDeviceSettings
from labctl.rig.directory import DeviceDirectory
from labctl.serial_driver import Frame
from labctl.serialio.clock import AcceleratedClock
from labctl.serialio.port import PortError, SerialPort, open_port
from labctl.serialio.rig import build_transport
from labctl.serialio.transport import SerialTransport

START = 1_780_272_000.0
SPEED = 600.0  # one sample per 0.1 s wall at 1/60 Hz


def spec(protocol: str, *, polled: bool = False) -> DeviceSpec:
    return DeviceSpec(
        vendor="acme",
        id=f"{protocol}-1",
        model=protocol.upper(),
        serial="S1",
        role="dut",
        error=OpticalParams(gain=1.0, offset=0.0, kappa=0.0, noise_sd=0.5),
        uart=SerialSim(protocol=protocol, polled=polled),  # type: ignore[arg-type]
    )


class Bench:
    """A simulated sensor running in this event loop, and the controller's side of it."""

    def __init__(self, tmp: Path, protocol: str, polled: bool = False) -> None:
        self.clock = DeviceClock.starting_now(START, SPEED)
        self.world = World(1, START, 2 * 86400)
        self.sim = SerialSimDevice(
            spec(protocol, polled=polled),
            self.world,
            self.clock,
            tmp / "by-id" / f"usb-sim-{protocol}",
        )
        self.stop = asyncio.Event()
        self.results: list[EdgeResult] = []
        self.directory = DeviceDirectory()

    @property
    def path(self) -> str:
        return str(self.sim.link.link)

    async def sink(self, r: EdgeResult) -> None:
        self.results.append(r)

    def transport(self, **options: object) -> SerialTransport:
        wall_t0 = time.time() - (time.monotonic() - self.clock.t0)
        cfg = SerialDeviceSettings(
            path=self.path,
            driver=self.sim.protocol,
            vendor="acme",
            id=self.sim.spec.id,
            options=options,
            silence_s=1.0,
            backoff_min_s=0.05,
            backoff_max_s=0.2,
        )
        clock = AcceleratedClock(START, SPEED, wall_t0)
        return build_transport(cfg, self.directory, self.sink, clock, START)

    def readings(self) -> list[tuple[str, int, dict[str, float]]]:
        return [(x.session, x.seq, dict(x.values)) for r in self.results for x in r.readings]

    def presence(self) -> list[str]:
        return [p.state for r in self.results for p in r.presence if p.state != "manifest"]


@pytest.fixture
async def pms(tmp_path: Path) -> AsyncIterator[Bench]:
    async with _bench(tmp_path, "pms5003") as b:
        yield b


@pytest.fixture
async def sds(tmp_path: Path) -> AsyncIterator[Bench]:
    async with _bench(tmp_path, "sds011") as b:
        yield b


@asynccontextmanager
async def _bench(tmp: Path, protocol: str) -> AsyncIterator[Bench]:
    b = Bench(tmp, protocol)
    task = asyncio.create_task(b.sim.run(b.stop))
    await asyncio.sleep(0)
    try:
        yield b
    finally:
        b.stop.set()
        await asyncio.wait_for(task, 5)


async def frames_for(
    port: SerialPort, decode: Callable[[bytes], list[Frame]], s: float
) -> list[Frame]:
    out: list[Frame] = []
    deadline = time.monotonic() + s
    while (left := deadline - time.monotonic()) > 0:
        try:
            out += decode(await asyncio.wait_for(port.read(), left))
        except TimeoutError:
            break
    return out


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# -- commands and replies -------------------------------------------------------------------


async def test_pms5003_modes_sleep_and_wake(pms: Bench) -> None:
    port = await asyncio.to_thread(open_port, pms.path, 9600)
    dec = pms5003.decoder()

    def decode(b: bytes) -> list[Frame]:
        return dec.feed(b).frames

    try:
        active = await frames_for(port, decode, 0.5)
        assert [f.kind for f in active].count("data") >= 3  # active: it reports by itself
        await port.write(pms5003.command(0xE1, 0))  # passive
        got = await frames_for(port, decode, 0.5)
        kinds = [f.kind for f in got]
        # A report the sensor sent before it read the command may still be on its way.
        reply = kinds.index("reply")
        assert got[reply].fields["mode"] == "passive"
        assert "data" not in kinds[reply + 1 :], "passive mode must not report"
        await port.write(pms5003.command(0xE2))  # passive read
        [read] = await frames_for(port, decode, 0.3)
        assert read.kind == "data" and read.values["pm25"] >= 0
        await port.write(pms5003.command(0xE4, 0))  # sleep
        [slept] = await frames_for(port, decode, 0.3)
        assert slept.fields["sleep"] == "sleep"
        await port.write(pms5003.command(0xE2))
        assert await frames_for(port, decode, 0.3) == []  # asleep: no answer
        await port.write(pms5003.command(0xE4, 1))  # wake: no reply, reads work again
        await port.write(pms5003.command(0xE2))
        [woke] = await frames_for(port, decode, 0.3)
        assert woke.kind == "data"
        await port.write(pms5003.command(0xE1, 1))  # back to active
        again = await frames_for(port, decode, 0.5)
        assert again[0].fields["mode"] == "active" and len(again) >= 3
        assert not dec.feed(b"").discards
    finally:
        port.close()


async def test_sds011_query_mode_sleep_firmware_and_period(sds: Bench) -> None:
    port = await asyncio.to_thread(open_port, sds.path, 9600)
    dec = sds011.decoder()

    def decode(b: bytes) -> list[Frame]:
        return dec.feed(b).frames

    try:
        await port.write(sds011.set_reporting_mode(True))
        got = await frames_for(port, decode, 0.4)
        replies = [f for f in got if f.kind == "reply"]
        assert replies[0].fields["mode"] == "query"
        assert not [f for f in got if f.kind == "data" and f is not got[0]][1:]
        await port.write(sds011.query())
        [data] = await frames_for(port, decode, 0.3)
        assert set(data.values) == {"pm25", "pm10"}
        await port.write(sds011.firmware_version())
        [fw] = await frames_for(port, decode, 0.3)
        assert fw.fields["firmware"] == "2018-11-16"
        await port.write(sds011.set_working_period(5))
        [period] = await frames_for(port, decode, 0.3)
        assert period.fields["period_min"] == 5
        await port.write(sds011.set_sleep(True))
        [sleep] = await frames_for(port, decode, 0.3)
        assert sleep.fields["state"] == "sleep"
        await port.write(sds011.query())
        assert await frames_for(port, decode, 0.3) == []
        await port.write(sds011.set_sleep(False))
        [work] = await frames_for(port, decode, 0.3)
        assert work.fields["state"] == "work"
    finally:
        port.close()


# -- the transport: readings, faults, unplug -------------------------------------------------


async def test_transport_polls_a_passive_pms5003(pms: Bench) -> None:
    t = pms.transport(mode="passive", poll_interval_s=60)
    task = asyncio.create_task(t.run())
    await until(lambda: len(pms.readings()) >= 10)
    t.stop()
    await asyncio.wait_for(task, 5)
    assert [r.fields.get("mode") for r in t.replies] == ["passive"]
    ts = [x.ts for r in pms.results for x in r.readings]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    rec = pms.directory.get(t.ref)
    assert rec is not None and rec.state == "offline" and rec.manifest is not None
    assert rec.manifest.channel("pm25") is not None
    assert pms.presence() == ["online", "offline"]


async def test_faults_never_make_a_wrong_reading(pms: Bench) -> None:
    t = pms.transport()
    task = asyncio.create_task(t.run())
    await until(lambda: len(pms.readings()) >= 3)
    pms.sim.inject(SerialFault(at_s=0, kind="garbage", count=50))
    pms.sim.inject(SerialFault(at_s=0, kind="bad_checksum", count=2))
    await until(lambda: pms.sim.stats.corrupted == 2)
    pms.sim.inject(SerialFault(at_s=0, kind="truncated", count=2))
    await until(lambda: pms.sim.stats.truncated == 2)
    n = len(pms.readings())
    await until(lambda: len(pms.readings()) >= n + 3)
    t.stop()
    await asyncio.wait_for(task, 5)
    # each corrupted or cut frame is missing, nothing else is; discards are counted and spooled
    assert t.stats.discarded_bytes["noise"] + t.stats.discarded_bytes["checksum"] >= 50 + 2 * 32
    rejections = [x for r in pms.results for x in r.rejections]
    assert rejections and all(x.reason.startswith("serial_") for x in rejections)
    assert sum(t.stats.discarded_bytes.values()) == sum(
        int(x.detail.split()[1]) for x in rejections
    )
    # every reading is one the sensor sent whole: its internal relations hold
    for _, _, v in pms.readings():
        assert v["pm1_cf1"] == v["pm1"] and v["pm25_cf1"] == v["pm25"]
        assert v["pm10_cf1"] == v["pm10"] and v["pm1"] <= v["pm25"] <= v["pm10"]
    sent_whole = pms.sim.stats.frames
    assert sent_whole - 1 <= t.stats.readings <= sent_whole  # one may still be in flight
    assert t.stats.unplugs == 0 and t.stats.opens == 1


async def test_unplug_and_replug_resume_in_a_new_session(sds: Bench) -> None:
    t = sds.transport(mode="query", poll_interval_s=60)
    task = asyncio.create_task(t.run())
    await until(lambda: len(sds.readings()) >= 5)
    first = t.session
    sds.sim.unplug(for_s=1800)  # 30 device minutes = 3 s wall
    await until(lambda: sds.presence()[-1:] == ["offline"], 3)
    assert not await asyncio.to_thread(Path(sds.path).is_symlink)  # gone with the adapter
    await until(lambda: t.session != first and sds.presence()[-1:] == ["online"], 8)
    n = len(sds.readings())
    await until(lambda: len(sds.readings()) >= n + 5)
    t.stop()
    await asyncio.wait_for(task, 5)
    sessions = [s for s, _, _ in sds.readings()]
    assert sessions[0] == first and sessions[-1] == t.session
    assert [q for s, q, _ in sds.readings() if s == t.session][:3] == [0, 1, 2]  # seq restarts
    assert t.stats.unplugs == 1 and t.stats.opens == 2 and t.stats.open_failures >= 1
    assert sds.presence() == ["online", "offline", "online", "offline"]
    # the gap shows in the time stamps: about 30 device minutes without a reading
    ts = [x.ts for r in sds.results for x in r.readings]
    assert max(b - a for a, b in itertools.pairwise(ts)) >= 1500


async def test_silence_reopens_the_port(pms: Bench) -> None:
    t = pms.transport()
    task = asyncio.create_task(t.run())
    await until(lambda: len(pms.readings()) >= 3)
    pms.sim.inject(SerialFault(at_s=0, kind="silence", for_s=1200))  # 2 s wall > silence_s
    await until(lambda: t.stats.silences == 1, 5)
    await until(lambda: t.stats.opens >= 2 and len(pms.readings()) > 0, 5)
    n = len(pms.readings())
    await until(lambda: len(pms.readings()) >= n + 3, 5)
    t.stop()
    await asyncio.wait_for(task, 5)
    assert "offline" in pms.presence()
    # time stamps keep increasing across the reopen: equal ones would be one point in a TSDB
    ts = [x.ts for r in pms.results for x in r.readings]
    assert all(b > a for a, b in itertools.pairwise(ts))


async def test_port_errors_in_words(tmp_path: Path) -> None:
    with pytest.raises(PortError, match=r"no serial port at .*plugged in"):
        open_port(str(tmp_path / "nope"), 9600)
    plain = tmp_path / "file"
    plain.write_text("x")
    with pytest.raises(PortError, match="not a serial port"):
        open_port(str(plain), 9600)
    master, slave = os.openpty()
    try:
        name = os.ttyname(slave)
        os.chmod(name, 0o000)
        if os.geteuid() != 0:
            with pytest.raises(PortError, match="permission denied"):
                open_port(name, 9600)
    finally:
        os.close(master)
        os.close(slave)


async def test_sniff_cli_prints_frames_as_json(pms: Bench) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labctl.cli.main",
        "serial",
        "sniff",
        pms.path,
        "--driver",
        "pms5003",
        "--json",
        "--count",
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    frames = [json.loads(line) for line in out.decode().splitlines()]
    assert len(frames) >= 3 and frames[0]["kind"] == "data"
    assert {"pm25", "pm10", "n0_3", "version"} <= set(frames[0]["fields"])
    missing = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labctl.cli.main",
        "serial",
        "sniff",
        pms.path + "-gone",
        "--driver",
        "pms5003",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await missing.communicate()
    assert missing.returncode == 3 and b"no serial port at" in err
