"""What a simulated lamppost node is: identity, luminaire, site, street, link and faults.

Plain pydantic data, like :mod:`labctl_sim.models`, so presets and tests can build any node.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from labctl_sim.lamppost.power import LuminaireParams
from labctl_sim.lamppost.schedule import ScheduleParams

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Outage(_Params):
    """A network outage at a fixed device time (seconds after the rig starts)."""

    at_s: Annotated[float, Field(ge=0)]
    for_s: Annotated[float, Field(gt=0)]


class FaultParams(_Params):
    """Faults the node injects; every random choice is drawn from the rig seed and the key.

    Times are device seconds (accelerated with the rig) except ``command_delay_s``: commands
    are a conversation with the lab in real time, so their delay is wall-clock seconds.
    """

    command_delay_s: Annotated[float, Field(ge=0, le=3600)] = 0.0
    """Wall-clock seconds between ``accepted`` and the final response."""
    drop_response_p: Probability = 0.0
    """Probability that a command's final response is never sent (it was still executed)."""
    wrong_level_factor: Annotated[float, Field(gt=0, le=2)] | None = None
    """The luminaire gets ``level × factor`` while the node reports the commanded level."""
    outages: tuple[Outage, ...] = ()
    """Scheduled network outages (the connection drops; the broker publishes ``lost``)."""
    outage_rate_per_h: Annotated[float, Field(ge=0, le=60)] = 0.0
    """Random outages per device hour (a Poisson process)…"""
    outage_mean_s: Annotated[float, Field(gt=0)] = 60.0
    """…lasting this long on average (exponential, at least 1 s)."""
    store_and_forward: bool = True
    """Buffer telemetry while offline and upload it afterwards; False: lose it."""
    message_loss_p: Probability = 0.0
    """Probability that a sample is never sent (its seq is used: the lab sees a gap)."""
    clock_skew_s: Annotated[float, Field(ge=-86400, le=86400)] = 0.0
    """Offset of the device clock: telemetry time stamps, schedule, command deadlines."""


class StreetParams(_Params):
    """The road the node watches."""

    traffic_scale: Annotated[float, Field(ge=0, le=20)] = 1.0
    """Flow relative to the built-in busy urban road (1 ≈ 1,000 vehicles/h at rush hour)."""
    noise_base_dba: Annotated[float, Field(ge=0, le=100)] = 38.0
    noise_sd_db: Annotated[float, Field(ge=0, le=20)] = 1.5


class LinkParams(_Params):
    """The node's radio link."""

    rssi_dbm: Annotated[float, Field(ge=-140, le=0)] = -78.0
    rssi_sd_db: Annotated[float, Field(ge=0, le=30)] = 2.0


class LamppostSpec(_Params):
    """One simulated lamppost node of a rig."""

    vendor: Name
    id: Name
    model: str
    serial: str
    hw_version: str = "sim"
    sw_version: str = "labctl-sim"
    rate_hz: Annotated[float, Field(gt=0, le=100)] = 1.0
    """Samples per second of device time on the ``node`` telemetry stream."""
    luminaire: LuminaireParams = Field(default_factory=LuminaireParams)
    lat: Annotated[float, Field(ge=-90, le=90)] = 22.30
    lon: Annotated[float, Field(ge=-180, le=180)] = 114.17
    """Where the node stands (reported in ``get_status``; a schedule carries its own)."""
    utc_offset_h: Annotated[float, Field(ge=-12, le=14)] | None = None
    """Local time of the node (schedules); None: the world's."""
    schedule: ScheduleParams | None = None
    """The schedule stored in the node's flash (kept across reboots); None: manual."""
    initial_level: Annotated[int, Field(ge=0, le=100)] = 0
    """Level at boot when there is no stored schedule."""
    street: StreetParams = Field(default_factory=StreetParams)
    link: LinkParams = Field(default_factory=LinkParams)
    reboot_s: Annotated[float, Field(ge=0, le=600)] = 2.0
    """Wall-clock seconds a reboot keeps the node off the network."""
    command_latency_s: Annotated[float, Field(ge=0, le=60)] = 0.02
    """Wall-clock seconds a healthy node takes to carry out a command."""
    faults: FaultParams = Field(default_factory=FaultParams)

    @property
    def key(self) -> str:
        """``vendor/id``."""
        return f"{self.vendor}/{self.id}"
