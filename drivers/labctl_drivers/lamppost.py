"""``lamppost``: smart-lamppost nodes over ``labctl/1`` — channels, typed commands, async API.

A lamppost node publishes one telemetry stream (``node``) with the channels in
:data:`CHANNELS` and takes the commands modelled below. Three parts:

* :class:`LamppostDriver` — the telemetry driver (``labctl.drivers`` entry point
  ``lamppost``): samples → readings, checking names against the manifest and the values
  that have a physical range (level 0–100 %, lamp on/off, counts ≥ 0);
* command models — :class:`SetLevel`, :class:`SetSchedule`, :class:`GetStatus`,
  :class:`Reboot`, :class:`Republish` (and :class:`Noop`, every device's ping): parameters
  are validated (pydantic) *before* anything is sent, so ``SetLevel(level=150)`` raises
  instead of reaching the device;
* :class:`Lamppost` — a thin async API over :class:`labctl.commands.CommandClient`::

      lamp = Lamppost(runtime.commands, DeviceRef("lumenta", "lx60-0001"))
      outcome = await lamp.set_level(50, timeout_s=5)
      outcome.status    # "succeeded" | "failed" | "rejected" | "timeout"
      outcome.accepted  # the node said "accepted" first
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from labctl.commands import CommandClient, CommandOutcome
from labctl.drivers import readings_of
from labctl.protocol.inbound import SampleIn
from labctl.protocol.payloads import Manifest
from labctl.readings import DeviceRef, Reading

STREAM = "node"
"""The telemetry stream a lamppost node publishes."""


class Channel(NamedTuple):
    """One channel of a lamppost node."""

    name: str
    unit: str
    type: Literal["float", "int", "bool"]
    description: str


CHANNELS: tuple[Channel, ...] = (
    Channel("level", "%", "float", "dimming level the node reports as applied"),
    Channel("lamp_on", "", "bool", "1 while the luminaire is lit"),
    Channel("power", "W", "float", "active input power (energy meter)"),
    Channel("energy", "kWh", "float", "energy register; grows within a boot, 0 after a reboot"),
    Channel("temperature", "°C", "float", "air temperature"),
    Channel("rh", "%", "float", "relative humidity"),
    Channel("pm25", "µg/m³", "float", "PM2.5 mass concentration"),
    Channel("noise", "dBA", "float", "road noise, equivalent level over the interval"),
    Channel("traffic", "vehicles", "int", "vehicles counted during the sample interval"),
    Channel("link_rssi", "dBm", "float", "received signal strength of the node's link"),
    Channel("link_quality", "%", "float", "link quality the modem reports"),
)
"""Channels of the ``node`` stream."""
CHANNEL_NAMES: frozenset[str] = frozenset(c.name for c in CHANNELS)
_RANGES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "level": (0.0, 100.0),
        "lamp_on": (0.0, 1.0),
        "power": (0.0, 1e6),
        "energy": (0.0, 1e9),
        "traffic": (0.0, 1e6),
        "link_quality": (0.0, 100.0),
    }
)


class LamppostDriver:
    """Telemetry samples of a lamppost node → readings."""

    name: ClassVar[str] = "lamppost"

    def decode(
        self,
        device: DeviceRef,
        manifest: Manifest,
        stream: str,
        session: str,
        samples: Sequence[SampleIn],
        received_ns: int,
    ) -> list[Reading]:
        """One reading per sample; ValueError in words for undeclared or impossible values."""
        declared = {c.name for c in manifest.channels}
        used: set[str] = set().union(*(s.v for s in samples))
        if not used <= declared:
            raise ValueError(
                f"channel(s) {', '.join(sorted(used - declared))} not declared in the manifest "
                f"(declared: {', '.join(sorted(declared))})"
            )
        for name in used & _RANGES.keys():
            lo, hi = _RANGES[name]
            bad = [s.v[name] for s in samples if not lo <= s.v.get(name, lo) <= hi]
            if bad:
                raise ValueError(f"{name} = {bad[0]:g} is outside {lo:g}…{hi:g}")
        return readings_of(device, stream, session, samples, received_ns)


# --- commands ------------------------------------------------------------------------------

At = Annotated[str, StringConstraints(pattern=r"^(dusk|dawn|([01][0-9]|2[0-3]):[0-5][0-9])$")]
"""A schedule time: local ``"HH:MM"``, ``"dusk"`` (sunset) or ``"dawn"`` (sunrise)."""


class LampCommand(BaseModel):
    """A lamppost command: its ``op`` and validated parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, populate_by_name=True)

    op: ClassVar[str]

    def params(self) -> dict[str, Any]:
        """The request's ``params`` (JSON-ready, wire names)."""
        return self.model_dump(mode="json", by_alias=True)


class SetLevel(LampCommand):
    """Light the luminaire at ``level`` % (a manual override of the schedule)."""

    op: ClassVar[str] = "set_level"
    level: Annotated[int, Field(ge=0, le=100)]


class SchedulePeriod(BaseModel):
    """The luminaire at ``level`` % from ``from`` until ``to`` (past midnight if ``to`` is
    not after ``from``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, populate_by_name=True)

    start: At = Field(alias="from")
    end: At = Field(alias="to")
    level: Annotated[int, Field(ge=0, le=100)]

    @model_validator(mode="after")
    def _not_empty(self) -> SchedulePeriod:
        if self.start == self.end:
            raise ValueError(f"a period from {self.start!r} to {self.end!r} is empty")
        return self


class SetSchedule(LampCommand):
    """Follow a schedule; ``dusk``/``dawn`` are computed for ``lat``/``lon`` by the node."""

    op: ClassVar[str] = "set_schedule"
    periods: Annotated[list[SchedulePeriod], Field(min_length=1, max_length=24)]
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]


class GetStatus(LampCommand):
    """Ask for the node's state (level, mode, energy, schedule, session, …)."""

    op: ClassVar[str] = "get_status"


class Reboot(LampCommand):
    """Restart the node: it answers, goes offline and returns with a new session."""

    op: ClassVar[str] = "reboot"


class Republish(LampCommand):
    """Publish the manifest and presence again."""

    op: ClassVar[str] = "republish"


class Noop(LampCommand):
    """The lab's conformance operation (docs/protocol.md §8.6): wait ``delay_ms``, succeed
    with ``{"runs": n}``; a ping."""

    op: ClassVar[str] = "noop"
    delay_ms: Annotated[int, Field(ge=0, le=60_000)] = 0


COMMANDS: Mapping[str, type[LampCommand]] = MappingProxyType(
    {c.op: c for c in (SetLevel, SetSchedule, GetStatus, Reboot, Republish, Noop)}
)
"""Command models by ``op``."""


def parse_command(op: str, params: Mapping[str, Any] | None = None) -> LampCommand:
    """A command from its ``op`` and ``params`` (e.g. a trial step); ValueError if invalid."""
    model = COMMANDS.get(op)
    if model is None:
        raise ValueError(f"lamppost has no command {op!r} (known: {', '.join(sorted(COMMANDS))})")
    return model.model_validate(dict(params or {}))


class Lamppost:
    """One lamppost node, commanded through a :class:`CommandClient`.

    Every method validates its parameters before sending (pydantic ``ValidationError``, a
    ``ValueError``) and returns the :class:`CommandOutcome`: ``succeeded`` / ``failed`` /
    ``rejected`` / ``timeout``, with ``accepted`` telling whether the node acknowledged first.
    """

    def __init__(
        self, commands: CommandClient, device: DeviceRef, *, timeout_s: float = 5.0
    ) -> None:
        self.commands = commands
        self.device = device
        self.timeout_s = timeout_s

    async def send(
        self,
        command: LampCommand,
        *,
        timeout_s: float | None = None,
        command_id: str | None = None,
    ) -> CommandOutcome:
        """Send a validated command and wait for its outcome."""
        return await self.commands.send(
            self.device,
            command.op,
            command.params(),
            timeout_s=self.timeout_s if timeout_s is None else timeout_s,
            command_id=command_id,
        )

    async def set_level(
        self, level: int, *, timeout_s: float | None = None, command_id: str | None = None
    ) -> CommandOutcome:
        """Dim to ``level`` % (0–100)."""
        return await self.send(SetLevel(level=level), timeout_s=timeout_s, command_id=command_id)

    async def set_schedule(
        self,
        periods: Sequence[SchedulePeriod | Mapping[str, Any]],
        *,
        lat: float,
        lon: float,
        timeout_s: float | None = None,
        command_id: str | None = None,
    ) -> CommandOutcome:
        """Follow ``periods`` (``{"from", "to", "level"}`` each) at ``lat``/``lon``."""
        command = SetSchedule.model_validate(
            {
                "periods": [
                    p.model_dump(by_alias=True) if isinstance(p, SchedulePeriod) else dict(p)
                    for p in periods
                ],
                "lat": float(lat),
                "lon": float(lon),
            }
        )
        return await self.send(command, timeout_s=timeout_s, command_id=command_id)

    async def get_status(
        self, *, timeout_s: float | None = None, command_id: str | None = None
    ) -> CommandOutcome:
        """The node's state in ``outcome.result``."""
        return await self.send(GetStatus(), timeout_s=timeout_s, command_id=command_id)

    async def reboot(
        self, *, timeout_s: float | None = None, command_id: str | None = None
    ) -> CommandOutcome:
        """Restart the node."""
        return await self.send(Reboot(), timeout_s=timeout_s, command_id=command_id)

    async def republish(
        self, *, timeout_s: float | None = None, command_id: str | None = None
    ) -> CommandOutcome:
        """Have the node publish its manifest and presence again."""
        return await self.send(Republish(), timeout_s=timeout_s, command_id=command_id)

    async def noop(
        self, delay_ms: int = 0, *, timeout_s: float | None = None, command_id: str | None = None
    ) -> CommandOutcome:
        """Ping: ``{"runs": n}`` after ``delay_ms``."""
        return await self.send(Noop(delay_ms=delay_ms), timeout_s=timeout_s, command_id=command_id)
