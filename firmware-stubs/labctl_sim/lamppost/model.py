"""A lamppost node without the network: its state, its commands' effects and its samples.

:class:`LamppostModel` is deterministic for a seed. Everything that does not depend on
commands (environment, street, link, the power meter's noise) is drawn per block of
:data:`BLOCK` samples from a generator seeded with the rig seed, the node key and the block
index, so a sample's noise is a function of its index alone: independent of how calls are
chunked and of samples skipped while the node was off. Numpy fills a block in one go; the
command-dependent part (level, power, energy) is a few float operations per sample, which
keeps hundreds of real-time nodes cheap. The MQTT node (:mod:`labctl_sim.lamppost.node`)
only decides *when* to call it.

Time: sample ``k`` is taken at true time ``start + phase + k / rate`` (``phase`` spreads the
nodes of a rig over the period so they do not all publish at once); the node's clock reads
that plus the clock-skew fault, which stamps the samples and drives the schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from labctl_sim.lamppost.power import EnergyMeter, power_at
from labctl_sim.lamppost.schedule import ScheduleEngine, ScheduleParams, describe
from labctl_sim.lamppost.spec import LamppostSpec
from labctl_sim.lamppost.street import StreetProfile, road_noise_dba
from labctl_sim.world import World, stable_key

Mode = Literal["manual", "schedule"]

CHANNELS: tuple[tuple[str, str, Literal["float", "int", "bool"]], ...] = (
    ("level", "%", "float"),
    ("lamp_on", "", "bool"),
    ("power", "W", "float"),
    ("energy", "kWh", "float"),
    ("temperature", "°C", "float"),
    ("rh", "%", "float"),
    ("pm25", "µg/m³", "float"),
    ("noise", "dBA", "float"),
    ("traffic", "vehicles", "int"),
    ("link_rssi", "dBm", "float"),
    ("link_quality", "%", "float"),
)
"""The ``node`` stream: name, unit, type, in sample order. ``level`` is the level the node
believes it applied; ``traffic`` counts vehicles that passed during the sample interval."""
CHANNEL_NAMES: tuple[str, ...] = tuple(name for name, _, _ in CHANNELS)
BLOCK = 64
"""Samples whose command-independent values are drawn together."""


@dataclass(frozen=True, slots=True)
class NodeSamples:
    """Consecutive samples of one node."""

    k: list[int]
    ts: list[float]
    """Device-clock time stamps (true time plus the clock skew)."""
    rows: list[list[float]]
    """Channel values per sample, in :data:`CHANNELS` order."""

    def __len__(self) -> int:
        return len(self.k)


@dataclass(frozen=True, slots=True)
class _Block:
    k0: int
    env: list[list[float]]
    """temperature, rh, pm25, noise, traffic, link_rssi, link_quality per sample."""
    z_power: list[list[float]]
    """Two standard normals per sample for the power meter's noise."""


class LamppostModel:
    """State, commands and deterministic samples of one lamppost node."""

    def __init__(self, spec: LamppostSpec, world: World, start: float, seed: int) -> None:
        self.spec = spec
        self.world = world
        self.start = float(start)
        self.period = 1.0 / spec.rate_hz
        self.phase = (stable_key(spec.key) % 1000) / 1000.0 * self.period
        self.skew = spec.faults.clock_skew_s
        self.utc_offset_h = (
            world.params.utc_offset_h if spec.utc_offset_h is None else spec.utc_offset_h
        )
        self.street = StreetProfile(world.params.utc_offset_h)
        self.meter = EnergyMeter()
        self._seed = (seed, stable_key("lamppost"), stable_key(spec.key))
        self._block: _Block | None = None
        self._next_k = 0
        self.stored_schedule = spec.schedule
        self.mode: Mode = "manual"
        self.manual_level = spec.initial_level
        self.engine: ScheduleEngine | None = None
        self.executed = 0
        """Commands carried out since boot (``get_status`` reports it)."""
        self.boot()

    # --- lifecycle --------------------------------------------------------------------------

    def boot(self) -> None:
        """Power-up state: stored schedule (or the initial level), energy register at 0."""
        self.meter.reset()
        self.executed = 0
        self.manual_level = self.spec.initial_level
        if self.stored_schedule is not None:
            self._use_schedule(self.stored_schedule)
        else:
            self.mode, self.engine = "manual", None

    # --- time -------------------------------------------------------------------------------

    @property
    def produced(self) -> int:
        """Index of the next sample."""
        return self._next_k

    def due(self, now_true: float) -> int:
        """How many samples (from k = 0) fall at or before true time ``now_true``."""
        return max(0, int((now_true - self.start - self.phase) // self.period) + 1)

    def sample_time(self, k: int) -> float:
        """True time of sample ``k``."""
        return self.start + self.phase + k * self.period

    def skip_to(self, k: int) -> None:
        """Jump to sample ``k`` without producing (the node was off)."""
        self._next_k = max(self._next_k, k)

    # --- commands ---------------------------------------------------------------------------

    def set_level(self, level: int) -> None:
        """Manual override at ``level`` % (holds until a schedule is set or the node reboots)."""
        self.mode, self.manual_level = "manual", level

    def set_schedule(self, params: ScheduleParams) -> None:
        """Store ``params`` (kept across reboots) and follow it."""
        self.stored_schedule = params
        self._use_schedule(params)

    def _use_schedule(self, params: ScheduleParams) -> None:
        self.engine = ScheduleEngine(params, self.utc_offset_h)
        self.mode = "schedule"

    def commanded(self, ts: float) -> float:
        """The level the node means to apply at device time ``ts``."""
        if self.mode == "schedule" and self.engine is not None:
            return self.engine.level_at(ts)
        return float(self.manual_level)

    def applied(self, commanded: float) -> float:
        """What the luminaire really gets (the wrong-level fault scales it)."""
        f = self.spec.faults.wrong_level_factor
        return commanded if f is None else min(commanded * f, 100.0)

    def status(self, now_true: float) -> dict[str, Any]:
        """What ``get_status`` reports at true time ``now_true`` (the node's beliefs)."""
        ts = now_true + self.skew
        level = self.commanded(ts)
        out: dict[str, Any] = {
            "level": level,
            "lamp_on": level > 0,
            "mode": self.mode,
            "energy_kwh": round(self.meter.kwh, 6),
            "executed": self.executed,
            "ts": round(ts, 3),
            "lat": self.spec.lat,
            "lon": self.spec.lon,
            "schedule": None,
        }
        if self.engine is not None:
            rise, sset = self.engine.sun(self.engine.local_day(ts))
            out["schedule"] = {
                "periods": describe(self.engine.params),
                "lat": self.engine.params.lat,
                "lon": self.engine.params.lon,
                "dawn": round(rise, 1),
                "dusk": round(sset, 1),
            }
        return out

    # --- samples ----------------------------------------------------------------------------

    def next(self, n: int) -> NodeSamples:
        """The next ``n`` samples."""
        ks = list(range(self._next_k, self._next_k + n))
        self._next_k += n
        lum = self.spec.luminaire
        nr, na = lum.noise_rel, lum.noise_abs_w
        ts_out: list[float] = []
        rows: list[list[float]] = []
        for k in ks:
            block = self._block_of(k)
            i = k - block.k0
            ts = self.start + self.phase + k * self.period + self.skew
            level = self.commanded(ts)
            z1, z2 = block.z_power[i]
            watts = max(power_at(self.applied(level), lum) * (1.0 + nr * z1) + na * z2, 0.0)
            kwh = self.meter.add(ts, watts)
            ts_out.append(round(ts, 3))
            rows.append(
                [
                    round(level, 1),
                    1.0 if level > 0 else 0.0,
                    round(watts, 2),
                    round(kwh, 6),
                    *block.env[i],
                ]
            )
        return NodeSamples(ks, ts_out, rows)

    def _block_of(self, k: int) -> _Block:
        b = self._block
        if b is None or not b.k0 <= k < b.k0 + BLOCK:
            b = self._block = self._draw_block(k // BLOCK)
        return b

    def _draw_block(self, index: int) -> _Block:
        k0 = index * BLOCK
        rng = np.random.default_rng([*self._seed, index])
        t = self.start + self.phase + np.arange(k0, k0 + BLOCK, dtype=np.float64) * self.period
        z = rng.standard_normal((BLOCK, 7))
        s = self.spec
        truth = self.world.sample(t)
        flow = self.street.flow(t) * s.street.traffic_scale
        rssi = np.round(s.link.rssi_dbm + s.link.rssi_sd_db * z[:, 6])
        env = np.column_stack(
            (
                np.round(truth.temperature + 0.15 * z[:, 2], 2),
                np.round(np.clip(truth.rh + 1.0 * z[:, 3], 0.0, 100.0), 2),
                np.round(np.maximum(truth.pm25 + (0.05 * truth.pm25 + 0.5) * z[:, 4], 0.0), 2),
                np.round(road_noise_dba(flow, s.street.noise_base_dba)
                         + s.street.noise_sd_db * z[:, 5], 1),
                rng.poisson(flow * self.period / 3600.0).astype(np.float64),
                rssi,
                np.clip(np.round((rssi + 110.0) * 100.0 / 60.0), 0.0, 100.0),
            )
        )
        return _Block(k0, env.tolist(), z[:, :2].tolist())
