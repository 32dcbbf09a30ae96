"""Time series from CSV files, for scoring data collected outside the lab (``labctl eval``).

A file has a header with at least ``ts`` and ``value``:

* ``ts``: ISO-8601 with ``Z`` or an offset, naive ISO-8601 (taken as UTC), or epoch seconds;
* ``value``: the measured channel; an empty cell is a missing sample, not an error;
* any other column whose cells are all numbers (or empty) is a condition channel, e.g. ``rh``;
  ``temp`` is read as ``temperature``. Columns with text are ignored, with a note.

Errors are :class:`CsvError` with a message that names the file and the line.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Final, TextIO

ALIASES: Final[Mapping[str, str]] = MappingProxyType({"temp": "temperature"})
"""Column names read as the lab's condition names."""

REQUIRED = ("ts", "value")


class CsvError(ValueError):
    """A CSV file that cannot be used; ``str()`` names the file and line for the user."""


@dataclass(frozen=True, slots=True)
class CsvSeries:
    """One file's samples: ``values[i]`` holds the channel and conditions at ``ts[i]``."""

    path: Path
    ts: list[float]
    values: list[dict[str, float]]
    conditions: tuple[str, ...]
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The subject key: the file name without its extension."""
        return self.path.stem


def parse_ts(text: str) -> float:
    """Epoch seconds from ISO-8601 (``Z``/offset, or naive = UTC) or epoch seconds."""
    s = text.strip()
    try:
        epoch = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(epoch):
            raise ValueError(f"{text!r} is not a time")
        return epoch
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time (use ISO-8601 like 2019-08-01T12:00:00Z, or epoch seconds)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _number(text: str) -> float | None:
    """The cell as a float; None when empty. ValueError when it is not a number."""
    s = text.strip()
    if not s:
        return None
    return float(s)


def load_series(path: Path, channel: str = "value") -> CsvSeries:
    """Read ``path``; the ``value`` column becomes ``channel`` in each sample's mapping."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows, lines, header = _read(path, fh)
    except OSError as exc:
        raise CsvError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CsvError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc

    names = [ALIASES.get(h, h) for h in header]
    ti, vi = names.index("ts"), names.index("value")
    extra = [(i, n) for i, n in enumerate(names) if i not in (ti, vi) and n]
    notes: list[str] = []
    ts: list[float] = []
    values: list[dict[str, float]] = []
    cond_cells: dict[int, list[float | None]] = {i: [] for i, _ in extra}
    bad_columns: dict[int, int] = {}
    for row, line in zip(rows, lines, strict=True):
        try:
            ts.append(parse_ts(row[ti]))
        except ValueError as exc:
            raise CsvError(f"{path}:{line}: column 'ts': {exc}") from None
        sample: dict[str, float] = {}
        try:
            v = _number(row[vi])
        except ValueError:
            raise CsvError(f"{path}:{line}: column 'value': {row[vi]!r} is not a number") from None
        if v is not None and math.isfinite(v):
            sample[channel] = v
        values.append(sample)
        for i, _ in extra:
            if i in bad_columns:
                continue
            try:
                cond_cells[i].append(_number(row[i]))
            except ValueError:
                bad_columns[i] = line
    for i, line in bad_columns.items():
        notes.append(f"{path}: column {header[i]!r} is not numeric (line {line}); ignored")
    conditions = tuple(n for i, n in extra if i not in bad_columns)
    for i, name in extra:
        if i in bad_columns:
            continue
        for sample, c in zip(values, cond_cells[i], strict=True):
            if c is not None and math.isfinite(c):
                sample[name] = c
    return CsvSeries(path=path, ts=ts, values=values, conditions=conditions, notes=notes)


def _read(path: Path, fh: TextIO) -> tuple[list[list[str]], list[int], list[str]]:
    """Rows, their line numbers and the lower-cased header; CsvError on a malformed file."""
    reader = csv.reader(fh)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise CsvError(f"{path}:1: empty file; expected a header with columns ts,value") from None
    except csv.Error as exc:
        raise CsvError(f"{path}:1: not CSV: {exc}") from None
    names = [ALIASES.get(h, h) for h in header]
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise CsvError(
            f"{path}:1: missing column {', '.join(map(repr, missing))} "
            f"(the header is {','.join(header)!r}; expected at least ts,value)"
        )
    dupes = sorted({n for n in names if n and names.count(n) > 1})
    if dupes:
        raise CsvError(f"{path}:1: column {', '.join(map(repr, dupes))} appears twice")
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue  # blank lines carry nothing
            if len(row) != len(header):
                raise CsvError(
                    f"{path}:{reader.line_num}: {len(row)} fields, the header has {len(header)}"
                )
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise CsvError(f"{path}:{reader.line_num}: not CSV: {exc}") from None
    return rows, lines, header
