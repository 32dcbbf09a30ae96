"""Sensor-side wire formats of the simulated PMS5003 and SDS011 (the firmware's view).

Written independently of the controller's drivers, so a simulator bug and a driver bug cannot
cancel out: the drivers' tests build their frames byte by byte from the datasheets instead.
"""

from __future__ import annotations

from dataclasses import dataclass


def _u16(v: int) -> bytes:
    v = max(0, min(0xFFFF, v))
    return bytes([v >> 8, v & 0xFF])


def pms_data(words: list[int], version: int = 0x97, error: int = 0) -> bytes:
    """A 32-byte PMS5003 data frame from its 12 data words."""
    body = b"BM" + _u16(28) + b"".join(_u16(w) for w in words) + bytes([version, error])
    return body + _u16(sum(body) & 0xFFFF)


def pms_reply(cmd: int, data: int) -> bytes:
    """The 8-byte answer to a mode or sleep command."""
    body = b"BM" + _u16(4) + bytes([cmd, data])
    return body + _u16(sum(body))


def sds_data(pm25: float, pm10: float, device_id: int) -> bytes:
    """A 10-byte SDS011 data frame (values in µg/m³, 0.1 resolution)."""
    a, b = (max(0, min(9999, round(v * 10))) for v in (pm25, pm10))
    payload = bytes([a & 0xFF, a >> 8, b & 0xFF, b >> 8, device_id >> 8, device_id & 0xFF])
    return b"\xaa\xc0" + payload + bytes([sum(payload) & 0xFF, 0xAB])


def sds_reply(cmd: int, d1: int, d2: int, d3: int, device_id: int) -> bytes:
    """A 10-byte ``AA C5`` answer."""
    payload = bytes([cmd, d1, d2, d3, device_id >> 8, device_id & 0xFF])
    return b"\xaa\xc5" + payload + bytes([sum(payload) & 0xFF, 0xAB])


@dataclass(frozen=True, slots=True)
class HostCommand:
    """A command the host wrote: the command byte and its data bytes."""

    cmd: int
    data: bytes


class CommandParser:
    """Finds host commands in what the controller wrote; junk and bad checksums are skipped."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self._buf = bytearray()
        self.rejected = 0

    def feed(self, data: bytes) -> list[HostCommand]:
        """Complete commands in ``data`` (and what was buffered)."""
        self._buf += data
        out: list[HostCommand] = []
        start, size = (b"BM", 7) if self.protocol == "pms5003" else (b"\xaa\xb4", 19)
        while True:
            i = self._buf.find(start)
            if i < 0:
                del self._buf[: max(0, len(self._buf) - 1)]
                return out
            del self._buf[:i]
            if len(self._buf) < size:
                return out
            c = bytes(self._buf[:size])
            if self.protocol == "pms5003":
                ok = sum(c[:5]) & 0xFFFF == (c[5] << 8 | c[6])
                parsed = HostCommand(c[2], c[3:5])
            else:
                ok = c[18] == 0xAB and sum(c[2:17]) & 0xFF == c[17]
                parsed = HostCommand(c[2], c[3:17])
            if ok:
                out.append(parsed)
                del self._buf[:size]
            else:
                self.rejected += 1
                del self._buf[:1]
