"""Serial driver plugins: byte streams from a UART in, decoded frames out.

A serial driver is two things: a *frame decoder* (bytes in → frames and discarded byte runs,
pure and synchronous, so it can be property-tested and reused by ``labctl serial sniff``) and
*command encoders* (what to write to the device to set it up, poll it and put it to sleep).
The transport (``labctl.serialio``) owns the port, the clock and the device's presence; the
driver knows nothing of ports, trials or sinks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, Self, runtime_checkable

from labctl.protocol.payloads import ChannelSpec

FieldValue = float | int | str


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete frame whose checksum (or syntax) was valid."""

    kind: str
    """``data`` (a measurement) or ``reply`` (an answer to a command), driver-specific."""
    fields: Mapping[str, FieldValue]
    """Every decoded field, for ``sniff --json`` and logs."""
    values: Mapping[str, float]
    """Channel values (declared in :meth:`SerialDriver.channels`); empty unless a measurement."""
    raw: bytes


@dataclass(frozen=True, slots=True)
class Discard:
    """A run of bytes the decoder threw away, and why."""

    data: bytes
    reason: str
    """``noise`` (no frame start), ``length`` (impossible length), ``checksum``,
    ``truncated`` (stream ended inside a frame), ``syntax`` (line drivers)."""


@dataclass
class DecodeResult:
    """What one :meth:`FrameDecoder.feed` produced."""

    frames: list[Frame] = field(default_factory=list)
    discards: list[Discard] = field(default_factory=list)

    @property
    def discarded_bytes(self) -> int:
        """Bytes in every discarded run."""
        return sum(len(d.data) for d in self.discards)


class FrameDecoder(Protocol):
    """Incremental, resynchronising decoder. Never raises on any input."""

    def feed(self, data: bytes) -> DecodeResult:
        """Take more bytes; return the frames completed and the bytes discarded so far."""
        ...

    def flush(self) -> DecodeResult:
        """The stream ended (port closed): whatever is pending is discarded as truncated."""
        ...

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a possible frame."""
        ...


@runtime_checkable
class SerialDriver(Protocol):
    """A device on a serial port. Built from the ``options`` of its rig config entry."""

    name: ClassVar[str]
    transport: ClassVar[Literal["serial"]]
    default_baud: ClassVar[int]
    stream: ClassVar[str]
    """Telemetry stream name of its readings (as ``…/telemetry/{stream}`` for MQTT devices)."""

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        """The driver for these options; ValueError in words for bad ones."""
        ...

    def channels(self) -> list[ChannelSpec]:
        """Channels its readings carry, with units and the expected rate."""
        ...

    def decoder(self) -> FrameDecoder:
        """A fresh decoder (one per opened port)."""
        ...

    def startup(self) -> list[bytes]:
        """Commands written after the port opens (mode, wake)."""
        ...

    def poll(self) -> bytes | None:
        """The read command of passive/query mode; None when the device reports by itself."""
        ...

    @property
    def poll_interval_s(self) -> float:
        """Device seconds between polls (only used when :meth:`poll` is not None)."""
        ...

    def shutdown(self) -> list[bytes]:
        """Commands written before the port closes on purpose (e.g. sleep)."""
        ...
