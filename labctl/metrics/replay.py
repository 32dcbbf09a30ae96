"""Read a recorded run's telemetry back from the spool.

A run record names the spool range its points were written to (start and end positions).
This module reads that range — never a TSDB — keeps the ``telemetry`` lines tagged with the
run's id, and yields them as samples in the order they were spooled (the order the evaluator
saw them). Re-scoring and the report's plots and data-quality figures are built on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from labctl.metrics.lineparse import iter_lines, parse_line, parse_series
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
        series = line[: _series_end(line)]
        measurement, tags = parse_series(series)
        if tags.get("run") != run_id:
            continue
        if measurement != "telemetry":
            if others is not None:
                p = parse_line(line)
                others.append(OtherPoint(p.measurement, dict(p.tags), dict(p.fields), p.ts_ns))
            continue
        p = parse_line(line)
        values: dict[str, float] = {}
        seq, session = -1, ""
        for k, v in p.fields.items():
            if k == "seq" and type(v) is int:
                seq = v
            elif k == "session" and isinstance(v, str):
                session = v
            elif isinstance(v, int | float) and not isinstance(v, bool):
                values[k] = float(v)
        yield Sample(
            device=f"{tags.get('vendor', '')}/{tags.get('device', '')}",
            ts=p.ts_ns / 1e9,
            values=values,
            seq=seq,
            session=session,
        )


def _series_end(line: str) -> int:
    i = line.find(" ")
    while i > 0 and line[i - 1] == "\\":
        i = line.find(" ", i + 1)
    if i < 0:
        raise ReplayError(f"not a line-protocol point: {line[:200]!r}")
    return i


def segment_status(directory: Path, recorded: dict[str, str]) -> dict[str, str]:
    """Each recorded segment's state now: ``unchanged``, ``changed`` or ``missing``."""
    spool = Spool.open_reader(directory) if directory.is_dir() else None
    out: dict[str, str] = {}
    for name, digest in recorded.items():
        path = directory / name
        if spool is None or not path.is_file():
            out[name] = "missing"
            continue
        number = int(os.path.splitext(name)[0])
        out[name] = "unchanged" if spool.sha256(number) == digest else "changed"
    return out
