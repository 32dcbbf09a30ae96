"""``pms5003``: Plantower PMS5003 particle sensor, 9600 8N1.

Data frame (32 bytes, big-endian 16-bit words)::

    42 4D | len=28 | PM1.0 PM2.5 PM10 (CF=1) | PM1.0 PM2.5 PM10 (atmospheric)
          | counts >0.3 >0.5 >1.0 >2.5 >5.0 >10 µm per 0.1 L | version, error | checksum

The checksum is the 16-bit sum of bytes 0–29. Commands are ``42 4D CMD DATAH DATAL`` plus the
16-bit sum of those five bytes; the sensor answers mode and sleep commands with an 8-byte frame
``42 4D 00 04 CMD DATA`` + checksum (it does not answer wake: it simply starts reporting).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from labctl.protocol.payloads import ChannelSpec
from labctl.serial_driver import FieldValue, Frame, FrameDecoder
from labctl_drivers.framing import BinaryFramer, u16be
from labctl_drivers.options import parse_options

START = b"\x42\x4d"
DATA_LEN = 32
REPLY_LEN = 8
CMD_READ, CMD_MODE, CMD_SLEEP = 0xE2, 0xE1, 0xE4

MASS = ("pm1_cf1", "pm25_cf1", "pm10_cf1", "pm1", "pm25", "pm10")
COUNTS = ("n0_3", "n0_5", "n1_0", "n2_5", "n5_0", "n10")
COUNT_UNIT = "#/0.1L"


class Pms5003Options(BaseModel):
    """Rig-config ``options`` of a PMS5003."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["active", "passive"] = "active"
    """``active``: the sensor reports by itself; ``passive``: labctl polls it."""
    poll_interval_s: float = Field(default=1.0, gt=0)
    """Passive mode: device seconds between reads."""
    rate_hz: float = Field(default=1.0, gt=0, le=1000)
    """Active mode: the rate the sensor reports at (datasheet: about 1 Hz)."""
    sleep_on_close: bool = False
    """Put the fan and laser to sleep when labctl lets go of the port."""


def command(cmd: int, data: int = 0) -> bytes:
    """A 7-byte host command."""
    body = bytes([0x42, 0x4D, cmd, (data >> 8) & 0xFF, data & 0xFF])
    s = sum(body)
    return body + bytes([(s >> 8) & 0xFF, s & 0xFF])


def _length(header: bytes) -> int | None:
    n = u16be(header, 2)
    return {28: DATA_LEN, 4: REPLY_LEN}.get(n)


def parse_frame(raw: bytes) -> Frame | None:
    """A complete candidate frame → Frame, or None when the checksum does not match."""
    if sum(raw[:-2]) & 0xFFFF != u16be(raw, len(raw) - 2):
        return None
    if len(raw) == REPLY_LEN:
        cmd, data = raw[4], raw[5]
        fields: dict[str, FieldValue] = {"command": f"{cmd:02X}", "data": data}
        if cmd == CMD_MODE:
            fields["mode"] = "active" if data else "passive"
        elif cmd == CMD_SLEEP:
            fields["sleep"] = "wake" if data else "sleep"
        return Frame("reply", fields, {}, raw)
    words = [u16be(raw, 4 + 2 * k) for k in range(12)]
    values = {name: float(w) for name, w in zip(MASS + COUNTS, words, strict=True)}
    fields = dict(values)
    fields["version"] = raw[28]
    fields["error"] = raw[29]
    return Frame("data", fields, values, raw)


def decoder() -> BinaryFramer:
    """A fresh PMS5003 frame decoder."""
    return BinaryFramer(START, 4, _length, parse_frame, DATA_LEN)


class Pms5003Driver:
    """Plantower PMS5003 (PM1/PM2.5/PM10, CF=1 and atmospheric, particle counts)."""

    name: ClassVar[str] = "pms5003"
    transport: ClassVar[Literal["serial"]] = "serial"
    default_baud: ClassVar[int] = 9600
    stream: ClassVar[str] = "air"

    def __init__(self, options: Pms5003Options) -> None:
        self.options = options

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        """See :class:`Pms5003Options`."""
        return cls(parse_options(Pms5003Options, options, cls.name))

    @property
    def poll_interval_s(self) -> float:
        """Passive-mode read interval."""
        return self.options.poll_interval_s

    def channels(self) -> list[ChannelSpec]:
        """Mass concentrations in µg/m³ and counts per 0.1 L."""
        o = self.options
        rate = 1.0 / o.poll_interval_s if o.mode == "passive" else o.rate_hz
        return [ChannelSpec(name=n, unit="µg/m³", type="int", rate_hz=rate) for n in MASS] + [
            ChannelSpec(name=n, unit=COUNT_UNIT, type="int", rate_hz=rate) for n in COUNTS
        ]

    def decoder(self) -> FrameDecoder:
        """A fresh frame decoder."""
        return decoder()

    def startup(self) -> list[bytes]:
        """Wake it, then set the reporting mode."""
        passive = self.options.mode == "passive"
        return [command(CMD_SLEEP, 1), command(CMD_MODE, 0 if passive else 1)]

    def poll(self) -> bytes | None:
        """Passive read, or None in active mode."""
        return command(CMD_READ) if self.options.mode == "passive" else None

    def shutdown(self) -> list[bytes]:
        """Sleep, when configured."""
        return [command(CMD_SLEEP, 0)] if self.options.sleep_on_close else []
