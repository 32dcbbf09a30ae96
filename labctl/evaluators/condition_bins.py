"""What the observing evaluators (``command-response``, ``availability``) share: options and
criteria checked in words, and the breakdown by the conditions a trial set for
its measured windows (e.g. ``{"loss_pct": 5, "delay_ms": 100}``).

Bins: a condition with edges in the spec's ``bins`` is cut into half-open intervals
(:func:`labctl.evaluators.breakdown.make_bins`); without edges, each distinct value the
windows carried is its own bin (trials set conditions to a few discrete levels). A window that
does not set a condition takes the value from the evaluator option ``condition_defaults``
(e.g. ``{loss_pct: 0}`` for a baseline window before any fault was injected), else it is left
out of that condition's breakdown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from labctl.evaluators.base import Subject
from labctl.evaluators.breakdown import (
    check_edges,
    condition_symbol,
    join_words,
    limitation_text,
    make_bins,
)
from labctl.evaluators.result import BinResult, CriterionOutcome, Limitation
from labctl.evaluators.windows import Window
from labctl.trial.criteria import Criterion

M = TypeVar("M", bound=BaseModel)


def parse_options(evaluator: str, model: type[M], options: Mapping[str, Any]) -> M:
    """``options`` validated by ``model``; ValueError naming each bad field in words."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        problems = [
            f"options.{'.'.join(str(p) for p in err['loc']) or '(top level)'}: "
            + ("unknown option" if err["type"] == "extra_forbidden" else str(err["msg"]))
            for err in exc.errors()
        ]
        raise ValueError(f"{evaluator}: " + "; ".join(problems)) from None


def check_criteria(evaluator: str, criteria: Mapping[str, Criterion], known: Sequence[str]) -> None:
    """ValueError in words when a criterion names a metric ``evaluator`` does not compute."""
    unknown = [k for k in criteria if k not in known]
    if unknown:
        raise ValueError(
            f"{evaluator} has no metric called {join_words([repr(u) for u in unknown])} to "
            f"judge; criteria can be set on: {', '.join(known)}"
        )


def outcomes(
    criteria: Mapping[str, Criterion], values: Mapping[str, float | None]
) -> list[CriterionOutcome]:
    """Every criterion against its metric (a missing metric fails)."""
    return [
        CriterionOutcome(
            metric=name,
            value=values.get(name),
            target=crit.describe(),
            passed=crit.holds(values.get(name)),
        )
        for name, crit in criteria.items()
    ]


@dataclass(frozen=True, slots=True)
class ConditionBin:
    """One bin of a condition: an interval, or one exact value (``lower == upper``)."""

    condition: str
    label: str
    lower: float | None
    upper: float | None
    exact: bool = False

    def contains(self, value: float) -> bool:
        """True when ``value`` falls in this bin."""
        if self.exact:
            return value == self.lower
        lo = -math.inf if self.lower is None else self.lower
        hi = math.inf if self.upper is None else self.upper
        return lo <= value < hi


def window_value(w: Window, condition: str, defaults: Mapping[str, float]) -> float | None:
    """The value of ``condition`` in window ``w`` (or its default)."""
    v = w.conditions.get(condition, defaults.get(condition))
    return None if v is None else float(v)


def condition_bins(
    windows: Sequence[Window],
    wanted: Sequence[str],
    edges: Mapping[str, Sequence[float]],
    defaults: Mapping[str, float],
) -> dict[str, list[ConditionBin]]:
    """Bins per condition: the spec's ``conditions`` when given, else every condition some
    window sets; a condition no window has a value for (nor a default) is left out."""
    names = list(dict.fromkeys(wanted)) or sorted({k for w in windows for k in w.conditions})
    out: dict[str, list[ConditionBin]] = {}
    for cond in names:
        seen = sorted({v for w in windows if (v := window_value(w, cond, defaults)) is not None})
        if not seen:
            continue
        if cond in edges:
            out[cond] = [
                ConditionBin(b.condition, b.label, b.lower, b.upper)
                for b in make_bins(cond, check_edges(cond, edges[cond]))
            ]
        else:
            symbol, unit = condition_symbol(cond)
            out[cond] = [
                ConditionBin(cond, f"{symbol} = {_q(v, unit)}", v, v, exact=True) for v in seen
            ]
    return out


def _q(x: float, unit: str) -> str:
    return f"{x:g} {unit}" if unit else f"{x:g}"


@dataclass(frozen=True, slots=True)
class BinFigures:
    """The metrics computed on what fell in one bin; ``n`` decides whether it is judged."""

    bin: ConditionBin
    n: int
    metrics: dict[str, float | None]


def judge_breakdown(
    subject: str,
    rows: Iterable[BinFigures],
    criteria: Mapping[str, Criterion],
    units: Mapping[str, str],
    min_n: int,
) -> tuple[list[BinResult], Limitation | None]:
    """Judge each bin of ONE condition (bins in ascending order) and name where a criterion
    first stops holding.

    A bin with fewer than ``min_n`` items is shown but not judged, and a metric the bin has
    no value for (e.g. no dimming command fell in it) is not judged there. The limitation
    reads "… when loss ≥ 5 %" when every judged bin from the first failing one upwards
    fails, else it names the one bin.
    """
    rows = list(rows)
    results: list[BinResult] = []
    failing: list[list[tuple[str, float | None, str, str]]] = []
    for r in rows:
        fails: list[tuple[str, float | None, str, str]] = []
        if r.n >= min_n:
            fails = [
                (name, r.metrics.get(name), units.get(name, ""), crit.describe())
                for name, crit in criteria.items()
                if name in r.metrics
                and r.metrics[name] is not None
                and not crit.holds(r.metrics[name])
            ]
        failing.append(fails)
        results.append(
            BinResult(
                condition=r.bin.condition,
                label=r.bin.label,
                lower=r.bin.lower,
                upper=r.bin.upper,
                n=r.n,
                metrics=r.metrics,
                failed=[f[0] for f in fails],
            )
        )
    first = next((i for i, f in enumerate(failing) if f), None)
    if first is None:
        return results, None
    b = rows[first].bin
    judged_after = [i for i in range(first + 1, len(rows)) if rows[i].n >= min_n]
    where = b.label
    if b.lower is not None and all(failing[i] for i in judged_after):
        symbol, unit = condition_symbol(b.condition)
        where = f"{symbol} ≥ {_q(b.lower, unit)}"
    fails = failing[first]
    text = limitation_text(subject, fails, where)
    if not any(rows[i].n >= min_n for i in range(first)):
        # It fails in the most benign bin judged: the condition is not what stops it.
        text = limitation_text(subject, fails, "").removesuffix(" when ") + (
            f" in every condition judged (from {b.label})"
            if all(failing[i] for i in judged_after)
            else f" even when {b.label}"
        )
    return results, Limitation(
        subject=subject,
        condition=b.condition,
        bin=where,
        criteria=[f[0] for f in fails],
        text=text,
    )


def index_subjects(subjects: Sequence[Subject]) -> tuple[dict[str, Subject], list[str]]:
    """Subjects by key (ValueError in words for a key given twice) and the keys judged: all
    but role ``reference``."""
    out: dict[str, Subject] = {}
    for s in subjects:
        if s.key in out:
            raise ValueError(f"subject {s.key!r} is given twice")
        out[s.key] = s
    return out, [s.key for s in subjects if s.role != "reference"]
