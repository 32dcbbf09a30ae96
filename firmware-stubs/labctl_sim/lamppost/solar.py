"""Sunrise and sunset from latitude, longitude and date: the NOAA solar-calculator equations.

The equations are those of NOAA's solar calculator spreadsheet (after Meeus, *Astronomical
Algorithms*): the sun's apparent longitude, declination and the equation of time at the
solar noon of the date, then the hour angle at which the sun's centre is 0.833° below the
horizon (refraction plus the sun's radius). Accurate to about a minute between ±60° latitude;
vectorised with numpy over dates.

Polar day and night have no sunrise: the hour angle is clipped, so a polar night gives
sunrise = sunset = solar noon (dark all day) and a polar day gives a 24-hour day.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DAY_S = 86400.0
_JD_UNIX_EPOCH = 2440587.5
_J2000 = 2451545.0
_ZENITH_DEG = 90.833
"""Sun centre 50′ below the horizon: 34′ of refraction plus 16′ of solar radius."""


def sun_times(days: npt.ArrayLike, lat: float, lon: float) -> tuple[FloatArray, FloatArray]:
    """Sunrise and sunset of calendar dates, as epoch seconds (UTC).

    ``days`` are dates as whole days since 1970-01-01 (the date of a local calendar: the
    events returned are those around that date's solar noon at ``lon``, east positive).
    """
    d = np.asarray(days, dtype=np.float64)
    # First pass at 12:00 local mean solar time, second pass at the solar noon it found.
    noon_min: FloatArray = np.full(d.shape, 720.0 - 4.0 * lon)
    for _ in range(2):
        eot, decl = _equation_of_time_and_declination(d + noon_min / 1440.0)
        noon_min = 720.0 - 4.0 * lon - eot
    phi = np.radians(lat)
    cos_ha = np.cos(np.radians(_ZENITH_DEG)) / (np.cos(phi) * np.cos(decl)) - np.tan(
        phi
    ) * np.tan(decl)
    ha_deg = np.degrees(np.arccos(np.clip(cos_ha, -1.0, 1.0)))
    base = d * DAY_S
    sunrise = base + (noon_min - 4.0 * ha_deg) * 60.0
    sunset = base + (noon_min + 4.0 * ha_deg) * 60.0
    return np.asarray(sunrise, dtype=np.float64), np.asarray(sunset, dtype=np.float64)


def _equation_of_time_and_declination(unix_days: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Equation of time (minutes) and solar declination (radians) at ``unix_days``."""
    t = (unix_days + _JD_UNIX_EPOCH - _J2000) / 36525.0  # Julian centuries since J2000
    l0 = np.radians(np.mod(280.46646 + t * (36000.76983 + t * 0.0003032), 360.0))
    m = np.radians(357.52911 + t * (35999.05029 - 0.0001537 * t))
    e = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    centre = (
        np.sin(m) * (1.914602 - t * (0.004817 + 0.000014 * t))
        + np.sin(2 * m) * (0.019993 - 0.000101 * t)
        + np.sin(3 * m) * 0.000289
    )
    omega = np.radians(125.04 - 1934.136 * t)
    apparent = np.radians(np.degrees(l0) + centre - 0.00569 - 0.00478 * np.sin(omega))
    eps0 = 23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60.0) / 60.0
    eps = np.radians(eps0 + 0.00256 * np.cos(omega))
    decl = np.arcsin(np.sin(eps) * np.sin(apparent))
    y = np.tan(eps / 2.0) ** 2
    eot = 4.0 * np.degrees(
        y * np.sin(2 * l0)
        - 2 * e * np.sin(m)
        + 4 * e * y * np.sin(m) * np.cos(2 * l0)
        - 0.5 * y * y * np.sin(4 * l0)
        - 1.25 * e * e * np.sin(2 * m)
    )
    return np.asarray(eot, dtype=np.float64), np.asarray(decl, dtype=np.float64)
