"""Read a recorded run's telemetry back from the spool.

A run record names the spool range its points were written to (start and end positions).
This module reads that range — never a TSDB — keeps the ``telemetry`` lines tagged with the
run's id, and yields them as samples in the order they were spooled (the order the evaluator
saw them). Re-scoring and the report's plots and data-quality figures are built on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from labctl.metrics.lineparse import iter_lines, parse_fields, parse_series, split_line
from labctl.metrics.spool import Spool, SpoolPosition, segment_name

READ_BYTES = 4 * 1024 * 1024


class ReplayError(RuntimeError):
    """The run's data cannot be read back from the spool; the message says why."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One telemetry reading as it was spooled."""

    device: str
    """``vendor/device``."""
    ts: float
    """Device clock, epoch seconds."""
    values: dict[str, float]
    seq: int
    session: str


@dataclass(frozen=True, slots=True)
class OtherPoint:
    """A non-telemetry point of the run (rejections, events), with its tags and fields."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | int | bool | str]
    ts_ns: int


def read_range(directory: Path, start: SpoolPosition, end: SpoolPosition) -> Iterator[str]:
    """The lines between ``start`` and ``end`` (exclusive) of the spool in ``directory``."""
    if not directory.is_dir():
        raise ReplayError(f"the spool directory {directory} is gone; the run cannot be re-read")
    spool = Spool.open_reader(directory)
    sizes = {s.number: s.size for s in spool.segments()}
    pos = start if start.segment > 0 else SpoolPosition(min(sizes, default=1), 0)
    while pos < end:
        size = sizes.get(pos.segment)
        if size is None:
            raise ReplayError(
                f"spool segment {directory / segment_name(pos.segment)} is missing; "
                "the run's raw data is no longer complete"
            )
        stop = end.offset if pos.segment == end.segment else size
        if stop > size:
            raise ReplayError(
                f"spool segment {directory / segment_name(pos.segment)} is {size} bytes, "
                f"shorter than the run's end at byte {stop}; it was truncated"
            )
        if pos.offset >= stop:
            pos = SpoolPosition(pos.segment + 1, 0)
            continue
        data, nxt = spool.read(pos, min(READ_BYTES, stop - pos.offset))
        if not data or nxt.segment != pos.segment:
            raise ReplayError(f"cannot read spool segment {pos.segment} at byte {pos.offset}")
        yield from iter_lines(data)
        pos = nxt


def samples(
    directory: Path,
    start: SpoolPosition,
    end: SpoolPosition,
    run_id: str,
    others: list[OtherPoint] | None = None,
) -> Iterator[Sample]:
    """The run's telemetry samples; other points of the run go into ``others`` if given."""
    for line in read_range(directory, start, end):
        series, section, ts_ns = split_line(line)
        measurement, tags = parse_series(series)
        if tags.get("run") != run_id:
            continue
        fields = parse_fields(section)
        if measurement != "telemetry":
            if others is not None:
                others.append(OtherPoint(measurement, dict(tags), fields, ts_ns))
            continue
        seq = fields.pop("seq", -1)
        session = fields.pop("session", "")
        yield Sample(
            device=f"{tags.get('vendor', '')}/{tags.get('device', '')}",
            ts=ts_ns / 1e9,
            values={k: float(v) for k, v in fields.items() if type(v) is float or type(v) is int},
            seq=seq if type(seq) is int else -1,
            session=session if isinstance(session, str) else "",
        )


def range_checksums(
    directory: Path, start: tuple[int, int], end: tuple[int, int]
) -> dict[str, str]:
    """SHA-256 of a run's own bytes in each spool segment it touches, by segment file name.

    Hashing the run's byte range rather than the whole file keeps the checksum valid after
    later runs append to the same segment (the spool is append-only, so the range never
    changes unless the data was altered).
    """
    out: dict[str, str] = {}
    for number in range(start[0], end[0] + 1):
        path = directory / segment_name(number)
        if not path.is_file():
            continue
        lo = start[1] if number == start[0] else 0
        hi = end[1] if number == end[0] else path.stat().st_size
        digest = hashlib.sha256()
        with path.open("rb") as f:
            f.seek(lo)
            remaining = max(0, hi - lo)
            while remaining:
                chunk = f.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                digest.update(chunk)
                remaining -= len(chunk)
        out[path.name] = digest.hexdigest()
    return out


def segment_status(
    directory: Path, recorded: dict[str, str], start: tuple[int, int], end: tuple[int, int]
) -> dict[str, str]:
    """Each recorded segment range's state now: ``unchanged``, ``changed`` or ``missing``."""
    now = range_checksums(directory, start, end) if directory.is_dir() else {}
    return {
        name: ("missing" if name not in now else "unchanged" if now[name] == d else "changed")
        for name, d in recorded.items()
    }
