"""Lamppost nodes of the built-in presets (wrapped into rig presets by :mod:`labctl_sim.models`)."""

from __future__ import annotations

from labctl_sim.lamppost.power import LuminaireParams
from labctl_sim.lamppost.schedule import Period, ScheduleParams
from labctl_sim.lamppost.spec import (
    FaultParams,
    LamppostSpec,
    LinkParams,
    StreetParams,
)

SITE = (22.30, 114.17)
"""Where the preset nodes stand (the world's default site, UTC+8)."""
DEFAULT_SCALE_NODES = 100

LUMENTA_LX60 = LuminaireParams(
    rated_w=60.0, standby_w=1.2, gamma=1.0, efficiency_full=0.92, efficiency_knee=0.05
)
"""A 60 W LED luminaire with a good driver."""
CITYLUX_CL90 = LuminaireParams(
    rated_w=90.0, standby_w=2.1, gamma=1.15, efficiency_full=0.88, efficiency_knee=0.08,
    noise_rel=0.006,
)
"""A 90 W luminaire with a cheaper driver (higher standby, worse light-load efficiency)."""


def midnight_dimming() -> ScheduleParams:
    """Full light from dusk to midnight, half until dawn: a common part-night profile."""
    lat, lon = SITE
    return ScheduleParams(
        periods=[
            Period.model_validate({"from": "dusk", "to": "00:00", "level": 100}),
            Period.model_validate({"from": "00:00", "to": "dawn", "level": 50}),
        ],
        lat=lat,
        lon=lon,
    )


def lamppost_specs() -> tuple[LamppostSpec, ...]:
    """Four nodes of two vendors (the ``lampposts`` preset).

    Lumenta LX-60 ``lx60-0001`` is healthy; ``lx60-0002`` dims to 70 % of the commanded level
    while reporting the commanded one (only its power gives it away). Citylux CL-90
    ``cl90-0001`` is healthy; ``cl90-0002`` sits on a weak link: occasional outages without
    store and forward, some lost messages, a slow command path and a clock 1.5 s ahead.
    """
    lat, lon = SITE
    schedule = midnight_dimming()
    common = {"lat": lat, "lon": lon, "schedule": schedule}
    return (
        LamppostSpec(
            vendor="lumenta", id="lx60-0001", model="LX-60", serial="LX60-0001",
            luminaire=LUMENTA_LX60, street=StreetParams(traffic_scale=1.2),
            link=LinkParams(rssi_dbm=-72.0), **common,
        ),
        LamppostSpec(
            vendor="lumenta", id="lx60-0002", model="LX-60", serial="LX60-0002",
            luminaire=LUMENTA_LX60, street=StreetParams(traffic_scale=0.8),
            link=LinkParams(rssi_dbm=-80.0),
            faults=FaultParams(wrong_level_factor=0.7), **common,
        ),
        LamppostSpec(
            vendor="citylux", id="cl90-0001", model="CL-90", serial="CL90-0001",
            luminaire=CITYLUX_CL90, street=StreetParams(traffic_scale=1.6, noise_base_dba=40),
            link=LinkParams(rssi_dbm=-76.0), **common,
        ),
        LamppostSpec(
            vendor="citylux", id="cl90-0002", model="CL-90", serial="CL90-0002",
            luminaire=CITYLUX_CL90, street=StreetParams(traffic_scale=0.5),
            link=LinkParams(rssi_dbm=-97.0, rssi_sd_db=4.0),
            faults=FaultParams(
                outage_rate_per_h=0.3, outage_mean_s=120.0, store_and_forward=False,
                message_loss_p=0.01, command_delay_s=0.4, clock_skew_s=1.5,
            ),
            **common,
        ),
    )


def scale_specs(n: int) -> tuple[LamppostSpec, ...]:
    """``n`` nodes for load tests (the ``lampposts-scale`` preset), deterministic by index.

    Two vendors alternate; every 25th node has the wrong-level fault and every 10th random
    outages (about one every two device hours) with store and forward.
    """
    if not 1 <= n <= 10_000:
        raise ValueError(f"lampposts-scale takes 1…10000 nodes, got {n}")
    lat, lon = SITE
    schedule = midnight_dimming()
    out = []
    for i in range(1, n + 1):
        lumenta = i % 2 == 1
        faults = FaultParams(
            wrong_level_factor=0.7 if i % 25 == 0 else None,
            outage_rate_per_h=0.5 if i % 10 == 0 else 0.0,
        )
        out.append(
            LamppostSpec(
                vendor="lumenta" if lumenta else "citylux",
                id=f"lp-{i:04d}",
                model="LX-60" if lumenta else "CL-90",
                serial=f"LP-{i:04d}",
                luminaire=LUMENTA_LX60 if lumenta else CITYLUX_CL90,
                lat=lat,
                lon=lon,
                schedule=schedule,
                street=StreetParams(traffic_scale=0.3 + (i * 37 % 100) / 60.0),
                link=LinkParams(rssi_dbm=-65.0 - (i * 53 % 30)),
                faults=faults,
            )
        )
    return tuple(out)
