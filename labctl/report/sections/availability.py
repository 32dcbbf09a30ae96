"""Report section of the ``availability`` evaluator: a sentence per device, the breakdown
bars, and uptime, outages, completeness and data latency per device."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import ClassVar

from labctl.evaluators.availability import UNITS, AvailabilityOptions
from labctl.evaluators.breakdown import join_words
from labctl.evaluators.result import SubjectResult
from labctl.report.model import Block, Cell, Section, Table
from labctl.report.numbers import cell, num
from labctl.report.sections import SectionContext
from labctl.report.sections.condition_bars import breakdown_bars
from labctl.report.sections.generic import criteria_sentence

NAMES = {
    "uptime": "uptime",
    "completeness": "completeness",
    "completeness_nominal": "completeness against the nominal rate",
    "reconnects": "reconnects",
    "outages": "outages",
    "failures": "failures",
    "mtbf": "MTBF",
    "mttr": "MTTR",
    "latency_p50": "data latency p50",
    "latency_p99": "data latency p99",
}
COLUMNS = (
    ("window_s", "measured (s)", 0),
    ("uptime", "uptime", 4),
    ("outages", "outages", 0),
    ("failures", "failures", 0),
    ("mtbf", "MTBF (s)", 0),
    ("mttr", "MTTR (s)", 1),
    ("reconnects", "reconnects", 0),
    ("samples", "samples", 0),
    ("expected", "expected (seq)", 0),
    ("completeness", "completeness (seq)", 4),
    ("completeness_nominal", "completeness (rate)", 4),
    ("latency_p50", "latency p50 (s)", 3),
    ("latency_p99", "latency p99 (s)", 3),
)


def _v(subject: SubjectResult, name: str) -> float | None:
    m = subject.metric(name)
    return m.value if m is not None else None


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{num(100 * value, 2)} %"


def _duration(value: float | None) -> str:
    """``45.5 s``, ``28.5 min``, ``1.5 h``, ``2.25 d`` (3 significant digits)."""
    if value is None:
        return "—"
    for size, unit in ((86400.0, "d"), (3600.0, "h"), (60.0, "min")):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.3g} s"


def _options(ctx: SectionContext) -> AvailabilityOptions:
    if ctx.spec is not None:
        with contextlib.suppress(ValueError):
            return AvailabilityOptions.model_validate(ctx.spec.options)
    return AvailabilityOptions()


def _plural(n: float, word: str) -> str:
    return f"{num(n, 0)} {word}{'' if n == 1 else 's'}"


class AvailabilitySection:
    """Presence and data: uptime, outages, completeness, data latency."""

    evaluator: ClassVar[str] = "availability"

    def effectiveness(self, ctx: SectionContext, subject: SubjectResult) -> str:
        """E.g. ``LP-1 acme/lp-01 fails uptime (0.95, target ≥ 0.99); … — online 95 % of
        1 h, 2 outages (MTBF 28.5 min, MTTR 1.5 min), 2 reconnects; 99.85 % of the samples
        by sequence number, 94.86 % of the nominal rate; data latency p99 0.71 s.``"""
        label = f"{subject.model} {subject.subject}".strip()
        outages = _v(subject, "outages") or 0.0
        text = criteria_sentence(subject, label)
        text += (
            f" — online {_pct(_v(subject, 'uptime'))} of {_duration(_v(subject, 'window_s'))}, "
            + _plural(outages, "outage")
        )
        if outages:
            text += (
                f" (MTBF {_duration(_v(subject, 'mtbf'))}, MTTR {_duration(_v(subject, 'mttr'))})"
            )
        text += (
            f", {_plural(_v(subject, 'reconnects') or 0.0, 'reconnect')}; "
            f"{_pct(_v(subject, 'completeness'))} of the samples by sequence number, "
            f"{_pct(_v(subject, 'completeness_nominal'))} of the nominal rate"
        )
        p99 = _v(subject, "latency_p99")
        if p99 is not None:
            text += f"; data latency p99 {num(p99)} s"
        if subject.limitations:
            where = "; ".join(
                f"{join_words([NAMES.get(c, c) for c in lim.criteria])} when {lim.bin}"
                for lim in subject.limitations
            )
            text += f"; in the condition breakdown it stops meeting {where}"
        return text + "."

    def limitation_blocks(self, ctx: SectionContext) -> Sequence[Block]:
        """Bars of the breakdown per condition bin."""
        ev = ctx.record.evaluation
        if ev is None or not any(s.breakdown for s in ev.subjects):
            return []
        criteria = ctx.spec.criteria if ctx.spec is not None else {}
        min_n = _options(ctx).min_samples_per_bin
        return breakdown_bars(ev, criteria, NAMES, UNITS, min_n, "samples")

    def sections(self, ctx: SectionContext) -> Sequence[Section]:
        """Availability figures per device."""
        ev = ctx.record.evaluation
        if ev is None or not ev.subjects:
            return []
        table = Table(
            columns=["device", *(title for _, title, _ in COLUMNS)],
            rows=[
                [Cell(s.subject)]
                + [
                    cell(
                        _v(s, name),
                        key=f"availability/{s.subject}/{name}",
                        unit=UNITS.get(name, ""),
                        digits=digits,
                    )
                    for name, _, digits in COLUMNS
                ]
                for s in ev.subjects
            ],
            caption=(
                "Over the measured windows, in device time. Uptime from presence (online "
                "time / window); an outage is a period not online, a failure a change from "
                "online to offline or lost; MTBF = online time / failures, MTTR = down time / "
                "outages. Completeness by sequence number: distinct (session, seq) received / "
                "(last − first + 1) per session and window — the criterion figure; against "
                "the rate: samples received / (window × nominal rate). Data latency: arrival "
                "− device time stamp."
            ),
        )
        return [Section("availability", "Availability per device", [table])]
