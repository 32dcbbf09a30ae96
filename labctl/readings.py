"""Typed readings: what drivers produce and evaluators and sinks consume.

A reading is one timestamped sample of one device: a set of channel values measured at the
same instant. Readings are typed named tuples rather than pydantic models because the payload
they come from was already validated at the edge and the ingest path creates hundreds of
thousands of them per second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """Where a device lives on the bus: ``vendor/device``."""

    vendor: str
    device: str

    @property
    def key(self) -> str:
        """``vendor/device``."""
        return f"{self.vendor}/{self.device}"

    @classmethod
    def parse(cls, key: str) -> DeviceRef:
        """Parse ``vendor/device``."""
        vendor, sep, device = key.partition("/")
        if not sep or not vendor or not device or "/" in device:
            raise ValueError(f"device reference {key!r} is not VENDOR/DEVICE")
        return cls(vendor, device)

    def __str__(self) -> str:
        return self.key


class Reading(NamedTuple):
    """One sample of one device. A NamedTuple: immutable and cheap to build on the hot path."""

    device: DeviceRef
    stream: str
    session: str
    seq: int
    ts: float
    """Device clock, epoch seconds."""
    values: Mapping[str, float]
    received_ns: int
    """Controller wall clock at arrival, epoch nanoseconds."""
