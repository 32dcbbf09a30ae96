"""The serial devices of a rig: one transport per configured device (wall clock) plus, on a
simulated rig, one per serial simulator listed in the simulator's ports file (accelerated
device clock)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from pydantic import ValidationError

from labctl.config import SerialDeviceSettings
from labctl.drivers import serial_driver_registry
from labctl.plugins import PluginError
from labctl.rig.directory import DeviceDirectory
from labctl.serialio.clock import AcceleratedClock, Clock, WallClock
from labctl.serialio.transport import SerialTransport, Sink

log = logging.getLogger(__name__)

SIM_SILENCE_S = 5.0
"""Simulated rigs run accelerated: a device quiet this long (wall) is reopened."""


class SerialRigError(RuntimeError):
    """A serial device cannot be set up (unknown driver, bad options, no simulator ports)."""


def build_transport(
    cfg: SerialDeviceSettings,
    directory: DeviceDirectory,
    sink: Sink,
    clock: Clock,
    grid_origin: float | None = None,
) -> SerialTransport:
    """A transport for ``cfg``; SerialRigError in words for a wrong driver name or options."""
    where = f"serial device {cfg.vendor}/{cfg.id} ({cfg.path})"
    try:
        driver_cls = serial_driver_registry().get(cfg.driver)
    except PluginError as exc:
        raise SerialRigError(f"{where}: {exc}") from None
    try:
        driver = driver_cls.from_options(cfg.options)
    except ValueError as exc:
        raise SerialRigError(f"{where}: {exc}") from None
    return SerialTransport(cfg, driver, directory, sink, clock, grid_origin=grid_origin)


def read_sim_ports(path: Path) -> tuple[AcceleratedClock, list[SerialDeviceSettings]]:
    """The simulator's ports file: its device clock and a config entry per serial device."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        c = data["clock"]
        clock = AcceleratedClock(float(c["start"]), float(c["speed"]), float(c["wall_t0"]))
        devices = [
            SerialDeviceSettings.model_validate(
                {**d, "silence_s": SIM_SILENCE_S, "backoff_min_s": 0.05, "backoff_max_s": 0.5}
            )
            for d in data["devices"]
        ]
    except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
        raise SerialRigError(f"cannot read the simulator's ports file {path}: {exc}") from exc
    return clock, devices


class SerialRig:
    """Runs every serial transport of a rig in a task group; see :meth:`running`."""

    def __init__(
        self, directory: DeviceDirectory, sink: Sink, on_event: Callable[[str], None] | None = None
    ) -> None:
        self.directory = directory
        self.sink = sink
        self.on_event = on_event or (lambda _s: None)
        self.transports: list[SerialTransport] = []
        self.error: Exception | None = None

    def check(self) -> None:
        """Raise the error that stopped the serial devices, if any."""
        if self.error is not None:
            raise self.error

    @asynccontextmanager
    async def running(
        self,
        configured: list[SerialDeviceSettings],
        sim_ports: Path | None = None,
        wait_s: float = 30.0,
    ) -> AsyncIterator[SerialRig]:
        """Run the devices in the background; on exit let go of every port (graceful)."""
        task = asyncio.create_task(self._main(configured, sim_ports, wait_s))
        try:
            yield self
        finally:
            for t in self.transports:
                t.stop()
            try:
                await asyncio.wait_for(asyncio.shield(task), 5.0)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _main(
        self, configured: list[SerialDeviceSettings], sim_ports: Path | None, wait_s: float
    ) -> None:
        try:
            wall = WallClock()
            for cfg in configured:
                self.transports.append(build_transport(cfg, self.directory, self.sink, wall))
            if sim_ports is not None:
                deadline = time.monotonic() + wait_s
                while not await asyncio.to_thread(sim_ports.exists):
                    if time.monotonic() > deadline:
                        raise SerialRigError(
                            f"the simulated rig did not list its serial ports in {wait_s:g} s "
                            f"({sim_ports})"
                        )
                    await asyncio.sleep(0.05)
                clock, devices = await asyncio.to_thread(read_sim_ports, sim_ports)
                for cfg in devices:
                    self.transports.append(
                        build_transport(cfg, self.directory, self.sink, clock, clock.start)
                    )
            if self.transports:
                names = ", ".join(f"{t.ref} on {t.cfg.path}" for t in self.transports)
                self.on_event(f"opening serial devices: {names}")
            async with asyncio.TaskGroup() as tg:
                for t in self.transports:
                    tg.create_task(t.run(), name=f"serial {t.ref}")
        except* SerialRigError as eg:
            self.error = eg.exceptions[0]
        except* Exception as eg:  # a bug must surface as a fault, not vanish in a task
            log.error("serial devices stopped", exc_info=eg)
            self.error = eg.exceptions[0] if len(eg.exceptions) == 1 else eg
