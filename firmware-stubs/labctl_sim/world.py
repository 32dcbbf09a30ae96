"""A seeded, deterministic world: true PM2.5, relative humidity and temperature over time.

The world is precomputed with numpy on a 1-minute grid over ``[start, start + span]`` and then
sampled by any device at any time (linear interpolation). Every simulated device of a rig reads
the same world, which is what makes collocation against the reference meaningful.

Shape of the weather (all parameters in :class:`WorldParams`):

* weather regimes: dry spells of a few days alternate with humid/rainy episodes of one to a few
  days (a renewal process), smoothed at the edges;
* temperature: a slow day-scale anomaly plus a diurnal cycle (warmest mid-afternoon), damped
  and cooler when it rains;
* relative humidity: anti-correlated with the diurnal temperature swing (humid nights, dry
  afternoons) and pushed towards saturation during rainy episodes;
* PM2.5: log-normal, with multi-day pollution episodes (AR(1) in log space), morning and
  evening traffic peaks, midday dilution, washout by rain and short additive spikes (a bus,
  a barbecue, construction dust).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

FloatArray = npt.NDArray[np.float64]

GRID_S = 60.0
"""Spacing of the precomputed grid, in seconds."""


class WorldParams(BaseModel):
    """Climate of a world; the defaults are a humid subtropical early summer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    utc_offset_h: float = Field(default=8.0, ge=-12, le=14)
    """Local time of the site, for the diurnal cycles."""
    pm_median: float = Field(default=12.0, gt=0)
    """Median PM2.5 in µg/m³ before diurnal, washout and spike terms."""
    pm_episode_sigma: float = Field(default=0.5, ge=0)
    """Standard deviation of log PM2.5 of multi-day pollution episodes."""
    pm_episode_tau_h: float = Field(default=36.0, gt=0)
    pm_spikes_per_day: float = Field(default=1.5, ge=0)
    pm_washout: float = Field(default=0.5, ge=0)
    """Log reduction of PM2.5 at full rain."""
    temp_mean: float = 27.0
    temp_diurnal_amp: float = Field(default=4.5, ge=0)
    rh_dry_mean: float = Field(default=64.0, ge=0, le=100)
    rh_per_degree: float = Field(default=2.6, ge=0)
    """How much RH falls per °C of diurnal warming (the anti-correlation)."""
    rh_wet_mean: float = Field(default=88.0, ge=0, le=100)
    dry_spell_days: tuple[float, float] = (2.0, 6.0)
    wet_spell_days: tuple[float, float] = (1.0, 2.5)


@dataclass(frozen=True, slots=True)
class Conditions:
    """True values of the world at some times (arrays of equal length)."""

    pm25: FloatArray
    """µg/m³"""
    rh: FloatArray
    """%"""
    temperature: FloatArray
    """°C"""


def stable_key(text: str) -> int:
    """A hash of ``text`` that is the same in every process (``hash()`` is salted)."""
    return zlib.crc32(text.encode())


class World:
    """True conditions on a 1-minute grid over ``[start, start + span_s]``.

    Same ``seed`` and parameters give an identical world. Times outside the span wrap around
    (the world repeats), so a device with a skewed clock or a run longer than the span still
    reads plausible values.
    """

    def __init__(
        self, seed: int, start: float, span_s: float, params: WorldParams | None = None
    ) -> None:
        if span_s < GRID_S:
            raise ValueError(f"a world spans at least {GRID_S:g} s, got {span_s:g}")
        self.seed = seed
        self.start = float(start)
        self.params = params or WorldParams()
        n = int(np.ceil(span_s / GRID_S)) + 1
        self.span_s = (n - 1) * GRID_S
        self.grid = self.start + GRID_S * np.arange(n, dtype=np.float64)
        self._pm25, self._rh, self._temperature = _generate(seed, self.grid, self.params)

    @property
    def truth(self) -> Conditions:
        """The whole precomputed grid (read-only copies are not made; do not modify)."""
        return Conditions(self._pm25, self._rh, self._temperature)

    def sample(self, t: npt.ArrayLike) -> Conditions:
        """True conditions at epoch seconds ``t`` (scalar or array), linearly interpolated."""
        ts = np.atleast_1d(np.asarray(t, dtype=np.float64))
        x = self.start + np.mod(ts - self.start, self.span_s)
        return Conditions(
            pm25=np.interp(x, self.grid, self._pm25),
            rh=np.interp(x, self.grid, self._rh),
            temperature=np.interp(x, self.grid, self._temperature),
        )


def _ar1(rng: np.random.Generator, n: int, tau: float, sigma: float) -> FloatArray:
    """A stationary AR(1) series of ``n`` steps with correlation time ``tau`` steps."""
    phi = float(np.exp(-1.0 / tau))
    eps = rng.standard_normal(n) * sigma * np.sqrt(1.0 - phi * phi)
    out = np.empty(n)
    out[0] = rng.standard_normal() * sigma
    # A plain loop over hours (a few thousand steps) is cheap; scipy.signal.lfilter would do too.
    for i in range(1, n):
        out[i] = phi * out[i - 1] + eps[i]
    return out


def _hourly_to_grid(hourly: FloatArray, minutes: FloatArray) -> FloatArray:
    return np.interp(minutes / 60.0, np.arange(hourly.size, dtype=np.float64), hourly)


def _wetness(rng: np.random.Generator, p: WorldParams, hours: FloatArray) -> FloatArray:
    """0 in dry spells, 1 in rainy episodes, with ~6-hour ramps between them."""
    total_h = float(hours[-1]) + 1.0
    wet = np.zeros(hours.size)
    t = rng.uniform(0.0, p.dry_spell_days[1]) * 24.0  # the run may start in any phase
    while t < total_h:
        length = rng.uniform(*p.wet_spell_days) * 24.0
        wet[(hours >= t) & (hours < t + length)] = 1.0
        t += length + rng.uniform(*p.dry_spell_days) * 24.0
    ramp = np.ones(6 * 60) / (6 * 60)
    return np.clip(np.convolve(wet, ramp, mode="same"), 0.0, 1.0)


def _bump(hour_of_day: FloatArray, centre: float, width: float) -> FloatArray:
    """A circular Gaussian bump on the 24-hour clock."""
    d = (hour_of_day - centre + 12.0) % 24.0 - 12.0
    return np.exp(-0.5 * (d / width) ** 2)


def _generate(
    seed: int, grid: FloatArray, p: WorldParams
) -> tuple[FloatArray, FloatArray, FloatArray]:
    # Independent streams per quantity, so tuning one does not reshuffle the others.
    streams = np.random.SeedSequence([seed, stable_key("world")]).spawn(4)
    r_wet, r_temp, r_rh, r_pm = (np.random.default_rng(s) for s in streams)
    n = grid.size
    minutes = np.arange(n, dtype=np.float64)
    hours = minutes / 60.0
    n_hours = int(np.ceil(hours[-1])) + 2
    hod = ((grid / 3600.0) + p.utc_offset_h) % 24.0

    w = _wetness(r_wet, p, hours)

    # Temperature: warmest ~15:00, coolest ~05:00; rain cools and flattens the cycle.
    diurnal = np.cos(2 * np.pi * (hod - 15.0) / 24.0)
    amp = p.temp_diurnal_amp * (1.0 - 0.6 * w)
    slow = _hourly_to_grid(_ar1(r_temp, n_hours, 72.0, 1.8), minutes)
    fast = _hourly_to_grid(_ar1(r_temp, n_hours, 2.0, 0.3), minutes)
    temperature = p.temp_mean + slow - 3.0 * w + amp * diurnal + fast

    # RH: falls as the day warms (anti-correlated with T), humid nights; rain saturates the air.
    rh_slow = _hourly_to_grid(_ar1(r_rh, n_hours, 48.0, 5.0), minutes)
    rh_fast = _hourly_to_grid(_ar1(r_rh, n_hours, 1.5, 1.5), minutes)
    rh_dry = p.rh_dry_mean + rh_slow - p.rh_per_degree * amp * diurnal
    rh_wet = p.rh_wet_mean + 0.4 * rh_slow - 1.2 * amp * diurnal
    rh = (1.0 - w) * rh_dry + w * rh_wet + rh_fast
    # Air rarely stays near saturation (fog, drizzle): approach 99 % softly above 92 %.
    rh = np.where(rh > 92.0, 92.0 + 7.0 * np.tanh((rh - 92.0) / 7.0), rh)
    rh = np.clip(rh, 15.0, 99.0)

    # PM2.5 in log space: episodes, traffic peaks (08:00, 20:00), midday mixing, washout.
    log_pm = (
        np.log(p.pm_median)
        + _hourly_to_grid(_ar1(r_pm, n_hours, p.pm_episode_tau_h, p.pm_episode_sigma), minutes)
        + 0.30 * _bump(hod, 8.0, 1.5)
        + 0.35 * _bump(hod, 20.5, 2.0)
        - 0.20 * _bump(hod, 14.0, 3.0)
        - p.pm_washout * w
        + _ar1(r_pm, n, 20.0, 0.08)
    )
    pm = np.exp(log_pm)
    # Short additive spikes with an exponential tail.
    days = n / 1440.0
    for _ in range(int(r_pm.poisson(p.pm_spikes_per_day * days))):
        i0 = int(r_pm.integers(0, n))
        height = float(np.exp(r_pm.normal(np.log(12.0), 0.6)))
        tau = float(r_pm.uniform(8.0, 40.0))
        length = min(n - i0, int(6 * tau))
        pm[i0 : i0 + length] += height * np.exp(-np.arange(length) / tau)
    return pm, rh, temperature
