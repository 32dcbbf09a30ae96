"""The comparison matrix: candidates × criteria across one or more runs of a trial, with the
best value of each criterion marked.

"Best" follows the target: the highest value for ``≥ x``, the lowest for ``≤ x``, the one
nearest the middle of the range for ``a–b`` (a slope of 1, an intercept of 0). Targets are
read back from the outcome's words (:meth:`labctl.trial.criteria.Criterion.describe`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from labctl.store.records import RunRecord

_NUM = r"-?\d+(?:\.\d*)?(?:e[+-]?\d+)?|-?inf"
_RANGE = re.compile(rf"^({_NUM})–({_NUM})$")
_BOUND = re.compile(rf"^([≥≤]) ({_NUM})$")


class CompareError(Exception):
    """Runs that cannot be compared; the message says why."""


@dataclass(frozen=True)
class MatrixCell:
    """One candidate's outcome on one criterion."""

    value: float | None
    target: str
    passed: bool
    best: bool = False


@dataclass(frozen=True)
class MatrixRow:
    """One candidate in one run."""

    run: str
    subject: str
    model: str
    passed: bool
    cells: dict[str, MatrixCell]

    def label(self, several_runs: bool) -> str:
        """The row's name: the subject, prefixed with the run when runs differ."""
        return f"{self.run} · {self.subject}" if several_runs else self.subject


@dataclass(frozen=True)
class Matrix:
    """Rows = candidates (per run), columns = criteria."""

    trial: str
    runs: list[str]
    criteria: list[str]
    targets: dict[str, list[str]]
    """Each criterion's targets as written (several when runs used different specs)."""
    rows: list[MatrixRow]

    @property
    def several_runs(self) -> bool:
        """True when the rows come from more than one run."""
        return len(self.runs) > 1


def goodness(value: float | None, target: str) -> float | None:
    """A score where larger is better, from a target in words; None when not comparable."""
    if value is None or not math.isfinite(value):
        return None
    m = _RANGE.match(target)
    if m:
        lo, hi = float(m.group(1)), float(m.group(2))
        return -abs(value - (lo + hi) / 2)
    m = _BOUND.match(target)
    if m:
        return value if m.group(1) == "≥" else -value
    return None


def matrix(records: Sequence[RunRecord]) -> Matrix:
    """The comparison of the candidates of ``records`` (runs of one trial)."""
    if not records:
        raise CompareError("give at least one run")
    trials = sorted({r.trial for r in records})
    if len(trials) > 1:
        raise CompareError(
            f"runs of different trials cannot be compared: {', '.join(trials)}; "
            "compare runs of one trial"
        )
    missing = [r.id for r in records if r.evaluation is None]
    if missing:
        raise CompareError(f"run(s) without a verdict (aborted or faulted): {', '.join(missing)}")
    criteria: list[str] = []
    targets: dict[str, list[str]] = {}
    rows: list[MatrixRow] = []
    for rec in records:
        assert rec.evaluation is not None
        for s in rec.evaluation.subjects:
            cells = {}
            for c in s.criteria:
                if c.metric not in targets:
                    criteria.append(c.metric)
                    targets[c.metric] = []
                if c.target not in targets[c.metric]:
                    targets[c.metric].append(c.target)
                cells[c.metric] = MatrixCell(c.value, c.target, c.passed)
            rows.append(MatrixRow(rec.id, s.subject, s.model, s.passed, cells))
    for name in criteria:
        scored = [
            (g, i)
            for i, row in enumerate(rows)
            if name in row.cells
            and (g := goodness(row.cells[name].value, row.cells[name].target)) is not None
        ]
        if len(scored) < 2:
            continue
        top = max(g for g, _ in scored)
        for g, i in scored:
            if g == top:
                cell = rows[i].cells[name]
                rows[i].cells[name] = MatrixCell(cell.value, cell.target, cell.passed, best=True)
    return Matrix(trials[0], [r.id for r in records], criteria, targets, rows)
