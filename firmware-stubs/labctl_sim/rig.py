"""A simulated rig: one world, its devices, one asyncio task group, a stats file at the end."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from labctl_sim.device import DeviceClock, DeviceEvent, DeviceOptions, Endpoint, SimDevice
from labctl_sim.lamppost.fleet import LamppostFleet
from labctl_sim.models import RigPreset, pm25_collocation
from labctl_sim.serial_device import SerialSimDevice, link_name
from labctl_sim.world import World

DEFAULT_SPAN_S = 30 * 86400.0
"""World span when the run has no ``until`` (the world wraps around after it)."""
_SPAN_MARGIN_S = 86400.0
"""Extra world beyond ``until`` for clock offsets and the last interpolation step."""


@dataclass(frozen=True)
class RigConfig:
    """Everything a rig run needs."""

    host: str
    port: int
    start: float
    """Device-clock epoch seconds at the moment the rig starts."""
    start_now: bool = False
    """Start the device clock at the wall-clock time :meth:`Rig.run` starts instead (``start``
    then only places the world): at speed 1 device time is the wall clock, to the
    millisecond, however long the process took to start, so a lab can measure latency from
    the devices' time stamps."""
    seed: int = 42
    speed: float = 1.0
    """Device seconds per real second."""
    until_s: float | None = None
    preset: RigPreset = field(default_factory=pm25_collocation)
    stats_path: Path | None = None
    device: DeviceOptions = field(default_factory=DeviceOptions)
    """Options shared by every device (its ``until_s`` is overridden by ``until_s`` above)."""
    serial_dir: Path | None = None
    """Where serial simulators keep their stable links (needed when the preset has any)."""
    serial_ports: Path | None = None
    """Where to write the ports file (links, drivers, clock) once the ptys exist."""
    register: Path | None = None
    """A scene dataset whose signboard register the preset's AI boxes enroll."""


class Rig:
    """The world and the devices of a preset, run together until a stop event.

    Constructing a rig builds the world (numpy, tens of milliseconds for 30 days); the device
    clock starts when :meth:`run` starts.
    """

    def __init__(
        self, config: RigConfig, on_event: Callable[[DeviceEvent], None] | None = None
    ) -> None:
        self.config = config
        span = (config.until_s or DEFAULT_SPAN_S) + _SPAN_MARGIN_S
        self.world = World(config.seed, config.start, span, config.preset.world)
        self.devices: list[SimDevice] = []
        self.serial_devices: list[SerialSimDevice] = []
        self.fleet: LamppostFleet | None = None
        """The preset's lamppost nodes (all in this loop), once :meth:`run` started."""
        self._on_event = on_event
        self._box_stats: dict[str, dict[str, object]] = {}

    async def run(self, stop: asyncio.Event) -> dict[str, dict[str, object]]:
        """Run every device until ``stop`` is set and they have shut down; return the stats.

        The stats file (if configured) is written however the run ends.
        """
        cfg = self.config
        clock = DeviceClock.starting_now(time.time() if cfg.start_now else cfg.start, cfg.speed)
        options = dataclasses.replace(cfg.device, until_s=cfg.until_s)
        endpoint = Endpoint(cfg.host, cfg.port)
        self.devices = [
            SimDevice(spec, self.world, clock, endpoint, options, self._on_event)
            for spec in cfg.preset.devices
            if spec.uart is None
        ]
        self.serial_devices = self._serial_devices(clock)
        if cfg.preset.lampposts:
            self.fleet = LamppostFleet(
                cfg.preset.lampposts, self.world, clock, endpoint, seed=cfg.seed,
                span_s=self.world.span_s, options=options, on_event=self._on_event,
            )
        try:
            for sd in self.serial_devices:
                sd.plug()
            if cfg.serial_ports is not None:
                await asyncio.to_thread(
                    write_json, cfg.serial_ports, serial_ports(clock, self.serial_devices)
                )
            async with asyncio.TaskGroup() as tg:
                for device in self.devices:
                    tg.create_task(device.run(stop), name=device.key)
                for sd in self.serial_devices:
                    tg.create_task(sd.run(stop), name=sd.key)
                if self.fleet is not None:
                    tg.create_task(self.fleet.run(stop), name="lampposts")
                if cfg.preset.aiboxes:
                    tg.create_task(self._run_boxes(stop), name="aiboxes")
        finally:
            if cfg.stats_path is not None:
                await asyncio.to_thread(write_stats, cfg.stats_path, self.stats())
        return self.stats()

    def _serial_devices(self, clock: DeviceClock) -> list[SerialSimDevice]:
        specs = [s for s in self.config.preset.devices if s.uart is not None]
        if specs and self.config.serial_dir is None:
            raise ValueError("the preset has serial devices: give a directory for their ptys")
        return [
            SerialSimDevice(s, self.world, clock, self.config.serial_dir / link_name(s))
            for s in specs
            if self.config.serial_dir is not None
        ]

    async def _run_boxes(self, stop: asyncio.Event) -> None:
        # OpenCV is imported only by rigs that have AI boxes.
        from labctl_sim.aibox.run import run_boxes

        cfg = self.config
        if cfg.register is None:
            raise ValueError(f"preset {cfg.preset.name!r} has AI boxes: give --register DATASET")
        self._box_stats = await run_boxes(
            cfg.host, cfg.port, cfg.register, list(cfg.preset.aiboxes), stop,
            on_event=self._on_event,
        )

    def stats(self) -> dict[str, dict[str, object]]:
        """Per device key: sessions (first_seq, last_seq, count), published, produced, …"""
        out: dict[str, dict[str, object]] = {}
        for d in self.devices:
            d.stats.unsent = d.buffered
            out[d.key] = d.stats.as_dict()
        for sd in self.serial_devices:
            out[sd.key] = sd.stats.as_dict()
        if self.fleet is not None:
            out.update(self.fleet.stats())
        out.update(self._box_stats)
        return out


def serial_ports(clock: DeviceClock, devices: list[SerialSimDevice]) -> dict[str, object]:
    """What the controller needs to open the serial simulators: stable links, drivers, driver
    options, identities, and the device clock (to stamp readings in accelerated time)."""
    wall_t0 = time.time() - (time.monotonic() - clock.t0)
    out = []
    for d in devices:
        s, ser = d.spec, d.spec.uart
        assert ser is not None
        period = d.model.period
        if ser.protocol == "pms5003":
            options: dict[str, object] = (
                {"mode": "passive", "poll_interval_s": period}
                if ser.polled
                else {"mode": "active", "rate_hz": s.rate_hz}
            )
        else:
            options = (
                {"mode": "query", "poll_interval_s": period}
                if ser.polled
                else {"mode": "active", "working_period_min": min(30, round(period / 60))}
            )
        out.append(
            {
                "vendor": s.vendor,
                "id": s.id,
                "model": s.model,
                "serial": s.serial,
                "path": str(d.link.link),
                "driver": ser.protocol,
                "options": options,
            }
        )
    return {
        "clock": {"start": clock.start, "speed": clock.speed, "wall_t0": wall_t0},
        "devices": out,
    }


def write_stats(path: Path, stats: dict[str, dict[str, object]]) -> None:
    """Write ``stats`` as JSON atomically (temporary file, fsync, rename)."""
    write_json(path, stats)


def write_json(path: Path, data: object) -> None:
    """Write ``data`` as JSON atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
