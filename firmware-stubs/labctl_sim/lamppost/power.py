"""The luminaire's electrical model and the node's energy meter.

Input power at dimming level ``L`` (0–100 %), with ``x = L / 100``::

    P(L) = P_standby + P_rated · x^γ / η(x)        (0 for the second term when x = 0)
    η(x) = η_full · x · (1 + k) / (x + k)

``P_standby`` is what the node draws with the lamp off (controller, sensors, modem, the LED
driver idling); ``P_rated · x^γ`` is the LED module's power (γ shapes the dimming curve);
``η`` is the LED driver's efficiency, ``η_full`` at full load and falling steeply at light
load (half of ``η_full``-ish at ``x ≈ k``), which is what real constant-current drivers do.
With ``γ ≥ 1`` the input power never falls as the level rises.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

FloatArray = npt.NDArray[np.float64]

J_PER_KWH = 3.6e6


class LuminaireParams(BaseModel):
    """A luminaire and its LED driver, as the power model sees them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rated_w: Annotated[float, Field(gt=0, le=2000)] = 60.0
    """LED module power at 100 %."""
    standby_w: Annotated[float, Field(ge=0, le=50)] = 1.5
    """Node power with the lamp off (controller, sensors, modem, idle driver)."""
    gamma: Annotated[float, Field(ge=1.0, le=3.0)] = 1.0
    """Exponent of the dimming curve (module power ∝ level^γ)."""
    efficiency_full: Annotated[float, Field(gt=0.2, le=1.0)] = 0.92
    efficiency_knee: Annotated[float, Field(gt=0.0, le=1.0)] = 0.06
    """Load fraction ``k`` where the driver's efficiency has fallen to about half."""
    noise_rel: Annotated[float, Field(ge=0, le=0.2)] = 0.004
    """Meter noise, standard deviation as a fraction of the reading…"""
    noise_abs_w: Annotated[float, Field(ge=0, le=5)] = 0.05
    """…plus this many watts."""


def driver_efficiency(level: npt.ArrayLike, p: LuminaireParams) -> FloatArray:
    """The LED driver's efficiency at ``level`` % (0 at level 0)."""
    x = np.clip(np.asarray(level, dtype=np.float64), 0.0, 100.0) / 100.0
    k = p.efficiency_knee
    return np.asarray(p.efficiency_full * x * (1.0 + k) / (x + k), dtype=np.float64)


def active_power(level: npt.ArrayLike, p: LuminaireParams) -> FloatArray:
    """True input power in watts at ``level`` % (noise-free)."""
    x = np.clip(np.asarray(level, dtype=np.float64), 0.0, 100.0) / 100.0
    k = p.efficiency_knee
    on = x > 0.0
    # x^γ / η(x) = x^(γ-1) · (x + k) / (η_full · (1 + k)): finite as x → 0, so no 0/0.
    module = p.rated_w * np.power(x, p.gamma - 1.0) * (x + k) / (p.efficiency_full * (1.0 + k))
    return np.asarray(p.standby_w + np.where(on, module, 0.0), dtype=np.float64)


def power_at(level: float, p: LuminaireParams) -> float:
    """:func:`active_power` for one level, in plain floats (the node's per-sample path)."""
    x = min(max(level, 0.0), 100.0) / 100.0
    if x <= 0.0:
        return p.standby_w
    k = p.efficiency_knee
    module: float = p.rated_w * x ** (p.gamma - 1.0) * (x + k) / (p.efficiency_full * (1.0 + k))
    return p.standby_w + module


class EnergyMeter:
    """Integrates power over device time (trapezoid rule between samples), in kWh.

    The register starts at 0 when the node boots and only grows; a reboot resets it (the
    simulated node keeps it in RAM, like node controllers that report energy per boot).
    """

    def __init__(self) -> None:
        self._kwh = 0.0
        self._last: tuple[float, float] | None = None

    @property
    def kwh(self) -> float:
        """Energy since the last reset."""
        return self._kwh

    def reset(self) -> None:
        """Back to 0 (a reboot)."""
        self._kwh = 0.0
        self._last = None

    def add(self, ts: float, watts: float) -> float:
        """Feed one sample (in time order); the register (kWh) after it."""
        if self._last is not None:
            t0, w0 = self._last
            if ts > t0:
                self._kwh += 0.5 * (w0 + watts) * (ts - t0) / J_PER_KWH
        self._last = (ts, watts)
        return self._kwh
