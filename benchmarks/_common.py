"""Helpers shared by the benchmark scripts: repository path, tables, machine load.

Only the standard library is imported here: the scripts start subscriber processes with the
``spawn`` method, which re-imports the main module (and this one) in every child, and a child's
peak RSS must not include libraries it does not use.
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
"""The repository root (benchmarks/..)."""


def use_repo_imports() -> None:
    """Make ``labctl``, ``labctl_drivers`` and ``tests.tsdb`` importable from a checkout."""
    for p in (REPO, REPO / "drivers", REPO / "firmware-stubs"):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """A plain-text table: one header line, a rule, one line per row."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        cols = zip(cells, widths, right, strict=True)
        out = [c.rjust(w) if r else c.ljust(w) for c, w, r in cols]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def fmt_rate(value: float | None) -> str:
    """``123,456`` or ``-``."""
    return "-" if value is None else f"{value:,.0f}"


def fmt_s(value: float | None) -> str:
    """Seconds with two decimals, or ``-``."""
    return "-" if value is None else f"{value:.2f}"


def fmt_mib(kib: int | None) -> str:
    """A ``ru_maxrss`` (KiB on Linux) in MiB, or ``-``."""
    return "-" if kib is None else f"{kib / 1024:.1f}"


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def load_note() -> str:
    """The machine: cores and 1-minute load average, so readers can judge interference."""
    cores = os.cpu_count() or 0
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return f"{cores} cores"
    return f"{cores} cores, load average {one:.2f} (1 min) {five:.2f} (5 min)"
