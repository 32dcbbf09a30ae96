"""``line``: devices that print one reading per line, as a JSON object or ``key=value`` pairs.

``{"pm25": 12.5, "rh": 61}`` or ``pm25=12.5 rh=61`` (pairs separated by spaces, commas or
semicolons). Only the channels declared in the options become readings; other keys are kept
as fields (shown by ``labctl serial sniff``) and otherwise ignored. A line that is not valid, or
carries no declared channel, or a declared channel whose value is not a finite number, is
discarded whole: a partly understood line never becomes a reading.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field

from labctl.protocol.payloads import ChannelName, ChannelSpec
from labctl.serial_driver import DecodeResult, Discard, FieldValue, Frame, FrameDecoder
from labctl_drivers.options import parse_options

_SEP = re.compile(r"[\s,;]+")


class LineOptions(BaseModel):
    """Rig-config ``options`` of a line-oriented device."""

    model_config = ConfigDict(extra="forbid")

    channels: dict[ChannelName, str] = Field(min_length=1)
    """Channel name → unit, e.g. ``{pm25: "µg/m³", rh: "%"}``."""
    rate_hz: float = Field(default=1.0, gt=0, le=1000)
    format: Literal["auto", "json", "kv"] = "auto"
    max_line: int = Field(default=1024, ge=16, le=65536)
    poll: str | None = None
    """A line to send to ask for a reading (``\\n`` is appended); None: it reports by itself."""
    poll_interval_s: float = Field(default=1.0, gt=0)


class LineDecoder:
    """Splits on ``\\n``; see the module docstring for what a line may hold."""

    def __init__(self, options: LineOptions) -> None:
        self._o = options
        self._buf = bytearray()
        self._skipping = False

    @property
    def pending(self) -> int:
        """Bytes of the unfinished line."""
        return len(self._buf)

    def feed(self, data: bytes) -> DecodeResult:
        """Take more bytes; complete lines become frames or discards."""
        out = DecodeResult()
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self._o.max_line:
                    out.discards.append(Discard(bytes(self._buf), "length"))
                    self._buf.clear()
                    self._skipping = True  # the rest of this line is junk too
                break
            raw = bytes(self._buf[: nl + 1])
            del self._buf[: nl + 1]
            if self._skipping:
                self._skipping = False
                out.discards.append(Discard(raw, "length"))
                continue
            self._line(raw, out)
        return out

    def flush(self) -> DecodeResult:
        """The unfinished line is truncated."""
        out = DecodeResult()
        if self._buf:
            out.discards.append(Discard(bytes(self._buf), "truncated"))
            self._buf.clear()
        self._skipping = False
        return out

    def _line(self, raw: bytes, out: DecodeResult) -> None:
        text = raw.strip()
        if not text:
            return
        fields = self._fields(text)
        values: dict[str, float] = {}
        if fields is not None:
            for name in self._o.channels:
                if name not in fields:
                    continue
                v = fields[name]
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    fields = None
                    break
                values[name] = float(v)
        if fields is None or not values:
            out.discards.append(Discard(raw, "syntax"))
            return
        out.frames.append(Frame("data", fields, values, raw))

    def _fields(self, text: bytes) -> dict[str, FieldValue] | None:
        fmt = self._o.format
        if fmt == "json" or (fmt == "auto" and text.startswith(b"{")):
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError:
                return None
            if not isinstance(obj, dict):
                return None
            return {str(k): _field(v) for k, v in obj.items()}
        try:
            s = text.decode("utf-8")
        except UnicodeDecodeError:
            return None
        fields: dict[str, FieldValue] = {}
        for token in _SEP.split(s):
            if not token:
                continue
            key, eq, value = token.partition("=")
            if not eq or not key:
                return None
            try:
                fields[key] = float(value)
            except ValueError:
                fields[key] = value
        return fields


def _field(v: object) -> FieldValue:
    return v if isinstance(v, int | float | str) and not isinstance(v, bool) else str(v)


class LineDriver:
    """One JSON object or ``key=value`` line per reading."""

    name: ClassVar[str] = "line"
    transport: ClassVar[Literal["serial"]] = "serial"
    default_baud: ClassVar[int] = 9600
    stream: ClassVar[str] = "line"

    def __init__(self, options: LineOptions) -> None:
        self.options = options

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        """See :class:`LineOptions`."""
        return cls(parse_options(LineOptions, options, cls.name))

    @property
    def poll_interval_s(self) -> float:
        """Seconds between poll lines."""
        return self.options.poll_interval_s

    def channels(self) -> list[ChannelSpec]:
        """The declared channels."""
        rate = 1.0 / self.poll_interval_s if self.options.poll else self.options.rate_hz
        return [ChannelSpec(name=n, unit=u, rate_hz=rate) for n, u in self.options.channels.items()]

    def decoder(self) -> FrameDecoder:
        """A fresh line decoder."""
        return LineDecoder(self.options)

    def startup(self) -> list[bytes]:
        """Nothing to set up."""
        return []

    def poll(self) -> bytes | None:
        """The configured poll line."""
        return None if self.options.poll is None else self.options.poll.encode() + b"\n"

    def shutdown(self) -> list[bytes]:
        """Nothing."""
        return []
