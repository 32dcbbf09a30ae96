"""The node's astronomical-clock schedule: which level is due at a device-clock time.

A schedule is a list of periods ``{from, to, level}``; ``from`` and ``to`` are local times
``"HH:MM"`` or ``"dusk"``/``"dawn"`` (sunset/sunrise of the date at the node's ``lat``/``lon``,
see :mod:`labctl_sim.lamppost.solar`). A period whose end is not after its start runs into the
next day (``dusk`` → ``dawn``, ``22:00`` → ``06:00``). The first period that contains a time
gives the level; outside every period the lamp is off (level 0).

Local time is the device clock plus the node's UTC offset, so a node with a skewed clock
switches at the wrong moment, as a real one would.
"""

from __future__ import annotations

import re
from typing import Annotated

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from labctl_sim.lamppost.solar import DAY_S, sun_times

FloatArray = npt.NDArray[np.float64]

TIME_PATTERN = r"^(dusk|dawn|([01][0-9]|2[0-3]):[0-5][0-9])$"
At = Annotated[str, StringConstraints(pattern=TIME_PATTERN)]
"""``"HH:MM"`` (local), ``"dusk"`` (sunset) or ``"dawn"`` (sunrise)."""
_HHMM = re.compile(r"^(\d\d):(\d\d)$")
_MAX_CACHED_DAYS = 4096


class Period(BaseModel):
    """One period of a schedule: the lamp at ``level`` % from ``from`` until ``to``."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, populate_by_name=True)

    start: At = Field(alias="from")
    end: At = Field(alias="to")
    level: Annotated[int, Field(ge=0, le=100)]

    @model_validator(mode="after")
    def _not_empty(self) -> Period:
        if self.start == self.end:
            raise ValueError(f"a period from {self.start!r} to {self.end!r} is empty")
        return self


class ScheduleParams(BaseModel):
    """Parameters of ``set_schedule``: the periods and where the node stands."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    periods: Annotated[list[Period], Field(min_length=1, max_length=24)]
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]


class ScheduleEngine:
    """Evaluates a schedule at device-clock times, caching each date's period bounds."""

    def __init__(self, params: ScheduleParams, utc_offset_h: float) -> None:
        self.params = params
        self.offset_s = utc_offset_h * 3600.0
        self._levels = [float(p.level) for p in params.periods]
        self._bounds: dict[int, list[tuple[float, float]]] = {}

    def local_day(self, ts: float) -> int:
        """The local calendar date of device time ``ts`` (days since 1970-01-01)."""
        return int((ts + self.offset_s) // DAY_S)

    def sun(self, day: int) -> tuple[float, float]:
        """Sunrise and sunset (epoch s) of local date ``day``."""
        rise, sset = sun_times([day], self.params.lat, self.params.lon)
        return float(rise[0]), float(sset[0])

    def level_at(self, ts: float) -> float:
        """The scheduled level (%) at device time ``ts``."""
        day = self.local_day(ts)
        today, yesterday = self.bounds(day), self.bounds(day - 1)
        for i, level in enumerate(self._levels):
            # A period instance belongs to the date it starts on: today's, or yesterday's
            # running past midnight.
            a, b = today[i]
            if a <= ts < b:
                return level
            a, b = yesterday[i]
            if a <= ts < b:
                return level
        return 0.0

    def levels(self, ts: npt.ArrayLike) -> FloatArray:
        """:meth:`level_at` of each time in ``ts``."""
        t = np.atleast_1d(np.asarray(ts, dtype=np.float64))
        return np.array([self.level_at(x) for x in t.tolist()], dtype=np.float64)

    def bounds(self, day: int) -> list[tuple[float, float]]:
        """Start and end (epoch s) of each period's instance that starts on local date ``day``."""
        cached = self._bounds.get(day)
        if cached is not None:
            return cached
        if len(self._bounds) >= _MAX_CACHED_DAYS:
            self._bounds.clear()
        rise, sset = sun_times([day, day + 1], self.params.lat, self.params.lon)
        midnight = day * DAY_S - self.offset_s
        out = []
        for p in self.params.periods:
            a = _resolve(p.start, midnight, rise[0], sset[0])
            b = _resolve(p.end, midnight, rise[0], sset[0])
            if b <= a:
                b = _resolve(p.end, midnight + DAY_S, rise[1], sset[1])
            out.append((a, b))
        self._bounds[day] = out
        return out


def _resolve(at: str, midnight: float, sunrise: float, sunset: float) -> float:
    """Epoch seconds of ``at`` on the local date starting at ``midnight``."""
    if at == "dusk":
        return float(sunset)
    if at == "dawn":
        return float(sunrise)
    m = _HHMM.match(at)
    assert m is not None  # validated by the model's pattern
    return midnight + int(m.group(1)) * 3600.0 + int(m.group(2)) * 60.0


def describe(params: ScheduleParams) -> list[dict[str, object]]:
    """The periods as plain JSON (for ``get_status``)."""
    return [p.model_dump(by_alias=True) for p in params.periods]

