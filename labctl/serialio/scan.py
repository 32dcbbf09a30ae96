"""Candidate serial ports: what pyserial enumerates, with their stable ``by-id`` names."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from serial.tools import list_ports

BY_ID = Path("/dev/serial/by-id")


@dataclass(frozen=True, slots=True)
class PortInfo:
    """One port."""

    device: str
    by_id: list[str]
    """Stable names (``/dev/serial/by-id/…``) that point at it: use these in rig config."""
    vid_pid: str
    description: str
    serial_number: str
    manufacturer: str

    def as_dict(self) -> dict[str, object]:
        """JSON shape."""
        return asdict(self)


def _by_id(directory: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if not directory.is_dir():
        return out
    for link in sorted(directory.iterdir()):
        out.setdefault(os.path.realpath(link), []).append(str(link))
    return out


def scan(by_id_dir: Path = BY_ID) -> list[PortInfo]:
    """Every port pyserial sees (USB adapters, on-board UARTs), sorted by device path."""
    names = _by_id(by_id_dir)
    ports = []
    for p in list_ports.comports():
        vid_pid = f"{p.vid:04x}:{p.pid:04x}" if p.vid is not None and p.pid is not None else ""
        ports.append(
            PortInfo(
                device=p.device,
                by_id=names.get(os.path.realpath(p.device), []),
                vid_pid=vid_pid,
                description=p.description if p.description != "n/a" else "",
                serial_number=p.serial_number or "",
                manufacturer=p.manufacturer or "",
            )
        )
    return sorted(ports, key=lambda p: p.device)
