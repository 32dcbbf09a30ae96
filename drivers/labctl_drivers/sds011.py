"""``sds011``: Nova Fitness SDS011 particle sensor, 9600 8N1.

Data frame (10 bytes): ``AA C0 PM25L PM25H PM10L PM10H ID1 ID2 CS AB``; PM = (H·256+L)/10 µg/m³
and CS is the low byte of the sum of bytes 2–7. Host commands are 19 bytes,
``AA B4 CMD D3…D14 ID1 ID2 CS AB`` with CS the low byte of the sum of bytes 2–16 (ID ``FF FF``
addresses every sensor). The sensor answers with ``AA C5 CMD D1 D2 D3 ID1 ID2 CS AB``, except
the query command, which it answers with a data frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from labctl.protocol.payloads import ChannelSpec
from labctl.serial_driver import FieldValue, Frame, FrameDecoder
from labctl_drivers.framing import BinaryFramer
from labctl_drivers.options import parse_options

FRAME_LEN = 10
COMMAND_LEN = 19
DATA, REPLY = 0xC0, 0xC5
CMD_MODE, CMD_QUERY, CMD_SET_ID, CMD_SLEEP, CMD_FIRMWARE, CMD_PERIOD = 2, 4, 5, 6, 7, 8
ALL = 0xFFFF


class Sds011Options(BaseModel):
    """Rig-config ``options`` of an SDS011."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["active", "query"] = "active"
    """``active``: the sensor reports by itself; ``query``: labctl polls it."""
    poll_interval_s: float = Field(default=1.0, gt=0)
    """Query mode: device seconds between queries."""
    working_period_min: int = Field(default=0, ge=0, le=30)
    """Active mode: 0 reports every second; n reports once every n minutes (fan off between)."""
    sleep_on_close: bool = False


def command(cmd: int, data: bytes | list[int] = b"", device: int = ALL) -> bytes:
    """A 19-byte host command; ``data`` fills D3… (zero-padded to 12 bytes)."""
    d = bytes(data).ljust(12, b"\x00")
    if len(d) != 12:
        raise ValueError("an SDS011 command carries at most 12 data bytes")
    body = bytes([cmd]) + d + bytes([(device >> 8) & 0xFF, device & 0xFF])
    return b"\xaa\xb4" + body + bytes([sum(body) & 0xFF, 0xAB])


def set_reporting_mode(query: bool) -> bytes:
    """Report by itself (active) or only when queried."""
    return command(CMD_MODE, [1, 1 if query else 0])


def query() -> bytes:
    """Ask for one data frame."""
    return command(CMD_QUERY)


def set_sleep(sleep: bool) -> bytes:
    """Sleep (fan and laser off) or work."""
    return command(CMD_SLEEP, [1, 0 if sleep else 1])


def set_working_period(minutes: int) -> bytes:
    """0: continuous; 1–30: one report every n minutes."""
    return command(CMD_PERIOD, [1, minutes])


def firmware_version() -> bytes:
    """Ask for the firmware date."""
    return command(CMD_FIRMWARE)


def _length(header: bytes) -> int | None:
    return FRAME_LEN if header[1] in (DATA, REPLY) else None


def parse_frame(raw: bytes) -> Frame | None:
    """A complete candidate frame → Frame, or None when checksum or trailer is wrong."""
    if raw[9] != 0xAB or sum(raw[2:8]) & 0xFF != raw[8]:
        return None
    dev = f"{raw[6]:02X}{raw[7]:02X}"
    if raw[1] == DATA:
        values = {
            "pm25": (raw[3] * 256 + raw[2]) / 10.0,
            "pm10": (raw[5] * 256 + raw[4]) / 10.0,
        }
        return Frame("data", {**values, "device_id": dev}, values, raw)
    cmd = raw[2]
    fields: dict[str, FieldValue] = {"command": cmd, "device_id": dev}
    if cmd in (CMD_MODE, CMD_SLEEP, CMD_PERIOD):
        fields["set"] = raw[3]
        value = raw[4]
        if cmd == CMD_MODE:
            fields["mode"] = "query" if value else "active"
        elif cmd == CMD_SLEEP:
            fields["state"] = "work" if value else "sleep"
        else:
            fields["period_min"] = value
    elif cmd == CMD_FIRMWARE:
        fields["firmware"] = f"20{raw[3]:02d}-{raw[4]:02d}-{raw[5]:02d}"
    return Frame("reply", fields, {}, raw)


def decoder() -> BinaryFramer:
    """A fresh SDS011 frame decoder."""
    return BinaryFramer(b"\xaa", 2, _length, parse_frame, FRAME_LEN)


class Sds011Driver:
    """Nova SDS011 (PM2.5 and PM10)."""

    name: ClassVar[str] = "sds011"
    transport: ClassVar[Literal["serial"]] = "serial"
    default_baud: ClassVar[int] = 9600
    stream: ClassVar[str] = "air"

    def __init__(self, options: Sds011Options) -> None:
        self.options = options

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        """See :class:`Sds011Options`."""
        return cls(parse_options(Sds011Options, options, cls.name))

    @property
    def poll_interval_s(self) -> float:
        """Query-mode interval."""
        return self.options.poll_interval_s

    def channels(self) -> list[ChannelSpec]:
        """PM2.5 and PM10 in µg/m³."""
        o = self.options
        if o.mode == "query":
            rate = 1.0 / o.poll_interval_s
        else:
            rate = 1.0 / (60.0 * o.working_period_min) if o.working_period_min else 1.0
        return [ChannelSpec(name=n, unit="µg/m³", rate_hz=rate) for n in ("pm25", "pm10")]

    def decoder(self) -> FrameDecoder:
        """A fresh frame decoder."""
        return decoder()

    def startup(self) -> list[bytes]:
        """Work, reporting mode, working period."""
        o = self.options
        return [
            set_sleep(False),
            set_reporting_mode(o.mode == "query"),
            set_working_period(o.working_period_min),
        ]

    def poll(self) -> bytes | None:
        """The query command in query mode."""
        return query() if self.options.mode == "query" else None

    def shutdown(self) -> list[bytes]:
        """Sleep, when configured."""
        return [set_sleep(True)] if self.options.sleep_on_close else []
