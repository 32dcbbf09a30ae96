"""The spool process (a real child process): ordered, durable appends; clear failures."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil
import pytest
from labctl_drivers.mqtt_sensor import MqttSensorDriver

from labctl.bus.edge import Edge, EdgeResult
from labctl.bus.mqtt import MqttBus
from labctl.controller import Controller, ControllerFault
from labctl.metrics.points import PointEncoder, RunTags
from labctl.metrics.spool import Spool, SpoolError, SpoolLockedError, SpoolPosition
from labctl.metrics.spool_link import SpoolLink
from labctl.readings import DeviceRef, Reading
from labctl.rig.directory import DeviceDirectory

MiB = 1024 * 1024


def _link(directory: Path, segment_bytes: int = 64 * MiB) -> SpoolLink:
    return SpoolLink(directory, segment_bytes=segment_bytes, endpoints=[])


def _readings(n: int, start: int = 0) -> list[Reading]:
    ref = DeviceRef("acme", "pm-1")
    return [
        Reading(ref, "air", "s1", i, 1.8e9 + i, {"pm25": i / 10, "rh": 50.0 + i % 7}, 0)
        for i in range(start, start + n)
    ]


async def test_appends_land_in_order_with_their_positions(tmp_path: Path) -> None:
    enc = PointEncoder("rig", lambda r: "dut", lambda r: RunTags("r1", "t"))
    expected = b""
    parts: list[bytes] = []
    async with _link(tmp_path, segment_bytes=20_000) as link:
        futures = []
        for k in range(10):  # pipelined: all sent before the first answer is awaited
            rs = _readings(50, 50 * k)
            text = f'event,kind=x name="batch {k}" {k}\n'.encode()
            futures.append(link.send_block(enc.pack(rs), text))
            parts.append(enc.readings(rs).encode() + text)
            expected += parts[-1]
        positions = [await f for f in futures]
        end = await link.append(b'event,kind=x name="last" 99\n')
        expected += b'event,kind=x name="last" 99\n'
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert end > positions[-1] and link.position() == end
    reader = Spool.open_reader(tmp_path)
    assert len(reader.segments()) > 1  # rolled over segments on the way
    data, stop = reader.read(SpoolPosition(1, 0), 100 * MiB)
    assert data == expected and stop == end
    # each request's position is the end of its own lines (appends waiting together share an
    # fsync, not their positions)
    prev = SpoolPosition(1, 0)
    for part, pos in zip(parts, positions, strict=True):
        assert reader.read(prev, len(part)) == (part, pos)
        prev = pos


async def test_a_second_writer_is_refused_in_words(tmp_path: Path) -> None:
    async with _link(tmp_path):
        with pytest.raises(SpoolLockedError, match="already open for writing"):
            async with _link(tmp_path):
                pass


async def test_ctrl_c_does_not_stop_the_spool_process(tmp_path: Path) -> None:
    async with _link(tmp_path) as link:
        assert link.pid is not None
        os.kill(link.pid, signal.SIGINT)  # what the terminal sends the whole process group
        await asyncio.sleep(0.3)
        pos = await link.append(b"m f=1 1\n")
    assert pos == SpoolPosition(1, 8)


async def test_a_bad_request_is_answered_and_the_link_goes_on(tmp_path: Path) -> None:
    async with _link(tmp_path) as link:
        with pytest.raises(SpoolError, match="must end with a newline"):
            await link.append(b"m f=1 1")  # not whole lines
        assert await link.append(b"m f=1 1\n") == SpoolPosition(1, 8)


async def _until_faulted(ctl: Controller) -> None:
    for _ in range(50):  # the death is noticed when the socket closes
        await ctl.accept_local(EdgeResult(readings=_readings(3, 3)))
        await asyncio.sleep(0.05)


async def test_a_dead_spool_process_faults_the_controller_in_words(tmp_path: Path) -> None:
    enc = PointEncoder("rig", lambda r: "dut", lambda r: RunTags("r1", "t"))
    async with _link(tmp_path) as link:
        # Readings from a local transport (serial, camera) take the same path; no broker.
        bus = MqttBus("127.0.0.1", 1, "unused", [])
        ctl = Controller(bus, Edge(DeviceDirectory(), MqttSensorDriver()), link, enc)
        await ctl.accept_local(EdgeResult(readings=_readings(3)))
        assert link.pid is not None
        os.kill(link.pid, signal.SIGKILL)
        with pytest.raises(ControllerFault) as info:
            await _until_faulted(ctl)
        msg = str(info.value)
        assert "cannot write the spool" in msg
        assert "spool process stopped" in msg and "signal 9" in msg
        assert "will be redelivered" in msg
        assert ctl.fault == msg
    # what was acknowledged before the kill is in the spool, whole
    data, _ = Spool.open_reader(tmp_path).read(SpoolPosition(1, 0), MiB)
    assert data.count(b"\n") == 3 and data.endswith(b"\n")


async def test_a_failed_write_faults_the_controller_and_keeps_nothing_partial(
    tmp_path: Path,
) -> None:
    """A write the disk refuses (here: the spool process's file size limit, so the test needs
    no privileges) reaches the controller in words; the segment is cut back to whole lines,
    and once the disk takes writes again the spool goes on."""
    enc = PointEncoder("rig", lambda r: "dut", lambda r: RunTags("r1", "t"))
    async with _link(tmp_path) as link:
        bus = MqttBus("127.0.0.1", 1, "unused", [])
        ctl = Controller(bus, Edge(DeviceDirectory(), MqttSensorDriver()), link, enc)
        await ctl.accept_local(EdgeResult(readings=_readings(10)))
        size = (tmp_path / "00000001.lp").stat().st_size
        assert link.pid is not None
        child = psutil.Process(link.pid)
        child.rlimit(psutil.RLIMIT_FSIZE, (size + 100, psutil.RLIM_INFINITY))  # a line or so
        with pytest.raises(ControllerFault) as info:
            await ctl.accept_local(EdgeResult(readings=_readings(50, 10)))
        msg = str(info.value)
        assert "cannot write the spool" in msg and "File too large" in msg
        assert "not acknowledged and will be redelivered" in msg
        assert (tmp_path / "00000001.lp").stat().st_size == size  # cut back, nothing partial
        child.rlimit(psutil.RLIMIT_FSIZE, (psutil.RLIM_INFINITY, psutil.RLIM_INFINITY))
        await link.append(b"m f=1 1\n")
    data, _ = Spool.open_reader(tmp_path).read(SpoolPosition(1, 0), MiB)
    assert data.count(b"\n") == 11 and data.endswith(b"m f=1 1\n")
