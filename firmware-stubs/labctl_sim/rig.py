"""A simulated rig: one world, its devices, one asyncio task group, a stats file at the end."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from labctl_sim.device import DeviceClock, DeviceEvent, DeviceOptions, Endpoint, SimDevice
from labctl_sim.models import RigPreset, pm25_collocation
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
    seed: int = 42
    speed: float = 1.0
    """Device seconds per real second."""
    until_s: float | None = None
    preset: RigPreset = field(default_factory=pm25_collocation)
    stats_path: Path | None = None
    device: DeviceOptions = field(default_factory=DeviceOptions)
    """Options shared by every device (its ``until_s`` is overridden by ``until_s`` above)."""


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
        self._on_event = on_event

    async def run(self, stop: asyncio.Event) -> dict[str, dict[str, object]]:
        """Run every device until ``stop`` is set and they have shut down; return the stats.

        The stats file (if configured) is written however the run ends.
        """
        cfg = self.config
        clock = DeviceClock.starting_now(cfg.start, cfg.speed)
        options = dataclasses.replace(cfg.device, until_s=cfg.until_s)
        endpoint = Endpoint(cfg.host, cfg.port)
        self.devices = [
            SimDevice(spec, self.world, clock, endpoint, options, self._on_event)
            for spec in cfg.preset.devices
        ]
        try:
            async with asyncio.TaskGroup() as tg:
                for device in self.devices:
                    tg.create_task(device.run(stop), name=device.key)
        finally:
            if cfg.stats_path is not None:
                await asyncio.to_thread(write_stats, cfg.stats_path, self.stats())
        return self.stats()

    def stats(self) -> dict[str, dict[str, object]]:
        """Per device key: sessions (first_seq, last_seq, count), published, produced, …"""
        out: dict[str, dict[str, object]] = {}
        for d in self.devices:
            d.stats.unsent = d.buffered
            out[d.key] = d.stats.as_dict()
        return out


def write_stats(path: Path, stats: dict[str, dict[str, object]]) -> None:
    """Write ``stats`` as JSON atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(stats, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
