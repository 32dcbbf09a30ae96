"""A simulated PMS5003 or SDS011 on the master side of a pty.

It samples the shared world on the device clock like the MQTT simulators (same error models),
reports by itself in active mode or answers reads in passive/query mode, obeys sleep/wake and
mode commands with the replies the datasheets give, and injects faults on request (or on the
schedule of its spec): garbage bytes, bad checksums, truncated frames, silence, and unplugging
(the pty pair is closed and the stable link removed; plugging in makes a new pair, and the
sensor powers on again in its default state: awake, active).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labctl_sim.device import DeviceClock
from labctl_sim.models import DeviceModel, DeviceSpec, SerialFault
from labctl_sim.pty_link import PtyLink
from labctl_sim.serial_frames import (
    CommandParser,
    HostCommand,
    pms_data,
    pms_reply,
    sds_data,
    sds_reply,
)
from labctl_sim.world import World, stable_key

_MIN_NAP_S = 0.001


@dataclass
class SerialSimStats:
    """What the simulated sensor did."""

    frames: int = 0
    """Data frames written whole."""
    dropped: int = 0
    """Frames that could not be written (unplugged, or nobody reading and the pty full)."""
    replies: int = 0
    commands: int = 0
    garbage_bytes: int = 0
    corrupted: int = 0
    truncated: int = 0
    unplugs: int = 0
    produced: int = 0

    def as_dict(self) -> dict[str, object]:
        """The stats-file shape (``published`` = data frames written, as for MQTT devices)."""
        return {
            "published": self.frames,
            "produced": self.produced,
            "dropped": self.dropped,
            "replies": self.replies,
            "commands": self.commands,
            "garbage_bytes": self.garbage_bytes,
            "corrupted": self.corrupted,
            "truncated": self.truncated,
            "unplugs": self.unplugs,
            "sessions": {},
        }


def link_name(spec: DeviceSpec) -> str:
    """A ``/dev/serial/by-id``-style name for the device's stable link."""
    raw = f"usb-labctl-sim_{spec.model}_{spec.serial}-if00-port0"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", raw)


class SerialSimDevice:
    """One simulated serial sensor; :meth:`run` until the stop event."""

    def __init__(self, spec: DeviceSpec, world: World, clock: DeviceClock, link: Path) -> None:
        if spec.uart is None:
            raise ValueError(f"{spec.key} is not a serial device")
        self.spec = spec
        self.protocol = spec.uart.protocol
        self.model = DeviceModel(spec, world, start=clock.start)
        self.clock = clock
        self.link = PtyLink(link)
        self.stats = SerialSimStats()
        self.device_id = stable_key(spec.key) & 0xFFFF
        self._faults = sorted(spec.uart.faults, key=lambda f: f.at_s)
        self._rng = np.random.default_rng(stable_key(spec.key))
        self._parser = CommandParser(self.protocol)
        self._latest: float | None = None
        self._bad_frames = 0
        self._cut_frames = 0
        self._silent_until = -math.inf
        self._replug_at: float | None = None
        self._power_on()

    @property
    def key(self) -> str:
        """``vendor/id``."""
        return self.spec.key

    def _power_on(self) -> None:
        self.awake = True
        self.active = True
        self.period_min = 0

    # -- the line --------------------------------------------------------------------------

    def plug(self) -> None:
        """Connect the adapter (a new pty pair behind the stable link)."""
        if self.link.plugged:
            return
        self._power_on()
        self._parser = CommandParser(self.protocol)
        self.link.plug()
        assert self.link.master is not None
        asyncio.get_running_loop().add_reader(self.link.master, self._on_readable)

    def unplug(self, for_s: float | None = None) -> None:
        """Pull the adapter; plug it back after ``for_s`` device seconds (None: stay out)."""
        if self.link.master is not None:
            asyncio.get_running_loop().remove_reader(self.link.master)
            self.stats.unplugs += 1
        self.link.unplug()
        self._replug_at = None if for_s is None else self.clock.now() + for_s

    # -- faults on request -----------------------------------------------------------------

    def inject(self, fault: SerialFault) -> None:
        """Apply a fault now (its ``at_s`` is ignored)."""
        if fault.kind == "garbage":
            junk = self._rng.integers(0, 256, fault.count, dtype=np.uint8).tobytes()
            if self.link.write(junk):
                self.stats.garbage_bytes += len(junk)
        elif fault.kind == "bad_checksum":
            self._bad_frames += fault.count
        elif fault.kind == "truncated":
            self._cut_frames += fault.count
        elif fault.kind == "silence":
            self._silent_until = self.clock.now() + fault.for_s
        else:
            self.unplug(fault.for_s)

    def silent(self) -> bool:
        """True during an injected silence."""
        return self.clock.now() < self._silent_until

    # -- running ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Sample, report and answer until ``stop``; then unplug."""
        self.plug()
        try:
            while not stop.is_set():
                self._step()
                due = self.clock.start + self.model.produced * self.model.period
                nap = max(_MIN_NAP_S, self.clock.real_seconds(due - self.clock.now()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), nap)
        finally:
            self.unplug()

    def _step(self) -> None:
        now = self.clock.now()
        if self._replug_at is not None and now >= self._replug_at:
            self._replug_at = None
            self.plug()
        while self._faults and self.clock.start + self._faults[0].at_s <= now:
            self.inject(self._faults.pop(0))
        due = int((now - self.clock.start) // self.model.period) + 1
        n = due - self.model.produced
        if n <= 0:
            return
        r = self.model.next(n)
        self.stats.produced += n
        for pm in r.pm25.tolist():
            self._latest = float(pm)
            if self.active and self.awake and not self.silent():
                self._send_data()

    def _send_data(self) -> None:
        if self._latest is None:
            return
        v = self._latest
        if self.protocol == "pms5003":
            atm = [round(0.68 * v), round(v), round(1.25 * v + 0.5)]
            counts = [round(v * k + c) for k, c in ((65, 120), (19, 35), (3.2, 6), (0.3, 1))]
            frame = pms_data([*atm, *atm, *counts, round(v * 0.05), round(v * 0.01)])
        else:
            frame = sds_data(v, 1.25 * v + 0.5, self.device_id)
        self._write_frame(frame, data=True)

    def _write_frame(self, frame: bytes, *, data: bool) -> None:
        if self._bad_frames:
            self._bad_frames -= 1
            self.stats.corrupted += 1
            # The checksum byte(s) of both protocols sit just before the end (SDS: then AB).
            at = len(frame) - (2 if self.protocol == "sds011" else 1)
            frame = frame[:at] + bytes([frame[at] ^ 0x5A]) + frame[at + 1 :]
            self.link.write(frame)
            return
        if self._cut_frames:
            self._cut_frames -= 1
            self.stats.truncated += 1
            self.link.write(frame[: len(frame) // 2])
            return
        if not self.link.write(frame):
            self.stats.dropped += 1
        elif data:
            self.stats.frames += 1
        else:
            self.stats.replies += 1

    # -- commands --------------------------------------------------------------------------

    def _on_readable(self) -> None:
        fd = self.link.master
        if fd is None:
            return
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # the controller's side is closed: nothing to answer
        if self.silent():
            return
        for cmd in self._parser.feed(data):
            self.stats.commands += 1
            if self.protocol == "pms5003":
                self._pms(cmd)
            else:
                self._sds(cmd)

    def _pms(self, c: HostCommand) -> None:
        value = c.data[1]
        if c.cmd == 0xE4:
            self.awake = bool(value)
            if not value:
                self._write_frame(pms_reply(0xE4, 0), data=False)
        elif not self.awake:
            return
        elif c.cmd == 0xE1:
            self.active = bool(value)
            self._write_frame(pms_reply(0xE1, value), data=False)
        elif c.cmd == 0xE2 and not self.active:
            self._send_data()

    def _sds(self, c: HostCommand) -> None:
        target = c.data[12] << 8 | c.data[13]
        if target not in (0xFFFF, self.device_id):
            return
        set_, value = c.data[0], c.data[1]
        if c.cmd == 6:
            if set_:
                self.awake = bool(value)
            self._write_frame(sds_reply(6, set_, int(self.awake), 0, self.device_id), data=False)
        elif not self.awake:
            return
        elif c.cmd == 2:
            if set_:
                self.active = not value
            self._write_frame(
                sds_reply(2, set_, int(not self.active), 0, self.device_id), data=False
            )
        elif c.cmd == 4:
            self._send_data()
        elif c.cmd == 7:
            self._write_frame(sds_reply(7, 18, 11, 16, self.device_id), data=False)
        elif c.cmd == 8:
            if set_:
                self.period_min = value
            self._write_frame(sds_reply(8, set_, self.period_min, 0, self.device_id), data=False)
        elif c.cmd == 5:
            self.device_id = c.data[10] << 8 | c.data[11]
            self._write_frame(sds_reply(5, 0, 0, 0, self.device_id), data=False)
