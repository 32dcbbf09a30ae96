"""Report section of the ``sensor-accuracy`` evaluator: sentences, breakdown bars, scatter
plots of candidate against reference with the fitted line, time series, EPA precision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from labctl.evaluators.averaging import HOUR_S, Series, averaging_label, pair
from labctl.evaluators.breakdown import MIN_PAIRS_TO_JUDGE, join_words
from labctl.evaluators.result import SubjectResult
from labctl.evaluators.sensor_accuracy import PAIR_METRICS, SensorAccuracyEvaluator
from labctl.report import plots
from labctl.report.model import Block, Cell, Figure, Paragraph, Section, Table
from labctl.report.numbers import cell, num, with_unit
from labctl.report.sections import SectionContext
from labctl.report.sections.generic import criteria_sentence
from labctl.trial.criteria import Criterion

_NAMES = {"r2": "R²", "rmse": "RMSE", "nrmse": "NRMSE", "completeness": "completeness"}


def _primary_label(ctx: SectionContext) -> str:
    hours = round(ctx.spec.averaging / HOUR_S) if ctx.spec is not None else 24
    return averaging_label(max(1, hours))


def _unit(subject: SubjectResult) -> str:
    m = subject.metric("rmse")
    return m.unit if m is not None else ""


class SensorAccuracySection:
    """Collocation against a reference (US EPA 2021 style)."""

    evaluator: ClassVar[str] = "sensor-accuracy"

    def effectiveness(self, ctx: SectionContext, subject: SubjectResult) -> str:
        """E.g. ``AS-10 airsense/as10-0001 meets all 5 criteria on 24h averages (slope 1.09,
        …); it stops meeting rmse when RH ≥ 85 %.``"""
        label = f"{subject.model} {subject.subject}".strip()
        figures = ", ".join(
            f"{_NAMES.get(c.metric, c.metric)} "
            + with_unit(c.value, self._unit_of(subject, c.metric))
            for c in subject.criteria
        )
        text = criteria_sentence(subject, label)
        text += f" on {_primary_label(ctx)} averages ({figures})"
        if subject.limitations:
            where = "; ".join(
                f"{join_words(lim.criteria)} when {lim.bin}" for lim in subject.limitations
            )
            text += f"; in the condition breakdown it stops meeting {where}"
        return text + "."

    @staticmethod
    def _unit_of(subject: SubjectResult, metric: str) -> str:
        m = subject.metric(metric)
        return m.unit if m is not None else ""

    def limitation_blocks(self, ctx: SectionContext) -> Sequence[Block]:
        """Bars of the breakdown: per condition, each metric that fails somewhere (RMSE when
        none does), one bar per candidate and bin, the target as dashed lines."""
        ev = ctx.record.evaluation
        if ev is None or not any(s.breakdown for s in ev.subjects):
            return []
        criteria = ctx.spec.criteria if ctx.spec is not None else {}
        conditions = list(dict.fromkeys(b.condition for s in ev.subjects for b in s.breakdown))
        groups: list[plots.BarGroup] = []
        for cond in conditions:
            failing = [
                m
                for m in PAIR_METRICS
                if any(
                    m in b.failed for s in ev.subjects for b in s.breakdown if b.condition == cond
                )
            ]
            metrics = failing or (["rmse"] if "rmse" in criteria or not criteria else [])
            for metric in metrics:
                bins = [b.label for b in ev.subjects[0].breakdown if b.condition == cond]
                series = []
                for s in ev.subjects:
                    rows = [b for b in s.breakdown if b.condition == cond]
                    series.append(
                        (
                            s.subject,
                            [b.metrics.get(metric) for b in rows],
                            [b.n >= MIN_PAIRS_TO_JUDGE for b in rows],
                        )
                    )
                crit = criteria.get(metric)
                groups.append(
                    plots.BarGroup(
                        title=f"{_NAMES.get(metric, metric)} by {cond} (1-hour pairs)",
                        bins=bins,
                        series=series,
                        target=_bounds(crit),
                        ylabel=_NAMES.get(metric, metric)
                        + (f" ({_unit(ev.subjects[0])})" if metric in ("rmse", "bias") else ""),
                    )
                )
        if not groups:
            return []
        return [
            Figure(
                data_uri=plots.bin_bars(groups),
                caption=(
                    "Figures per condition bin on 1-hour pairs; dashed red lines are the target; "
                    f"hatched bars have fewer than {MIN_PAIRS_TO_JUDGE} pairs and are not judged."
                ),
                alt="bar chart of the condition breakdown",
            )
        ]

    def sections(self, ctx: SectionContext) -> Sequence[Section]:
        """Candidate against reference (scatter with fit, time series) and EPA precision."""
        ev = ctx.record.evaluation
        if ev is None:
            return []
        out = [Section("plots", "Candidate against reference", self._plots(ctx))]
        if ev.groups:
            out.append(
                Section(
                    "precision",
                    "Precision between units of one model",
                    [
                        Table(
                            columns=["model", "units", "SD", "CV (%)", "periods", "averaging (h)"],
                            rows=[
                                [
                                    Cell(g.group),
                                    Cell(", ".join(g.members)),
                                    *[
                                        cell(
                                            m.value,
                                            key=f"precision/{g.group}/{m.name}",
                                            unit=m.unit,
                                        )
                                        for name in ("sd", "cv", "n", "averaging")
                                        for m in g.metrics
                                        if m.name == name
                                    ],
                                ]
                                for g in ev.groups
                            ],
                            caption="EPA 2021 precision across collocated units of the "
                            "same model, on periods where every unit is valid.",
                        )
                    ],
                )
            )
        return out

    def _plots(self, ctx: SectionContext) -> list[Block]:
        ev = ctx.record.evaluation
        evaluator = ctx.evaluator
        if ev is None or not isinstance(evaluator, SensorAccuracyEvaluator):
            return [
                Paragraph(
                    "Plots need the run's raw data, which could not be read back from the "
                    "spool (see Provenance).",
                    tone="note",
                )
            ]
        ref = evaluator.reference
        if ref is None:
            return [Paragraph("No reference device: nothing to plot.", tone="note")]
        label = _primary_label(ctx)
        hours = evaluator.averaging_hours
        primary = evaluator.averages(hours)
        hourly = evaluator.averages(1)
        unit = evaluator.unit
        panels = []
        for s in ev.subjects:
            if s.subject not in primary:
                continue
            _, x, y = pair(primary[ref], primary[s.subject])
            _, bx, by = pair(hourly[ref], hourly[s.subject]) if hours != 1 else (None, x[:0], y[:0])
            slope, intercept, r2, n = (s.metric(k) for k in ("slope", "intercept", "r2", "n"))
            panels.append(
                plots.ScatterPanel(
                    title=f"{s.subject} ({s.model})" if s.model else s.subject,
                    x=x,
                    y=y,
                    slope=slope.value if slope else None,
                    intercept=intercept.value if intercept else None,
                    note=(
                        f"y = {num(slope.value if slope else None)}x "
                        f"{_signed(intercept.value if intercept else None)}\n"
                        f"R² = {num(r2.value if r2 else None)}, "
                        f"n = {num(n.value if n else None, 0)}"
                    ),
                    background_x=bx,
                    background_y=by,
                )
            )
        blocks: list[Block] = []
        if panels:
            blocks.append(
                Figure(
                    data_uri=plots.scatter(panels, unit, label),
                    caption=(
                        f"{evaluator.channel} of each candidate against the reference: "
                        f"{label} averages (coloured), 1-hour averages (grey), the 1:1 line "
                        "(dashed) and the fitted line (red), with the slope, intercept and R² "
                        "of the run record."
                    ),
                    alt="scatter plots of candidate against reference",
                )
            )
            ts_panels = []
            for s in ev.subjects:
                if s.subject not in hourly:
                    continue
                ts_panels.append(
                    (
                        f"{s.subject} ({s.model})" if s.model else s.subject,
                        [
                            _line("reference", hourly[ref], reference=True),
                            _line(s.subject, hourly[s.subject]),
                        ],
                    )
                )
            blocks.append(
                Figure(
                    data_uri=plots.time_series(ts_panels, f"{evaluator.channel} ({unit})"),
                    caption=(
                        f"Valid 1-hour averages of {evaluator.channel} over the trial, each "
                        "candidate with the reference (device time, UTC)."
                    ),
                    alt="time series of hourly averages",
                )
            )
        return blocks


def _line(label: str, series: Series, reference: bool = False) -> plots.Line:
    t = series.starts.astype(np.float64) * HOUR_S
    return plots.Line(label, t, series.values, reference)


def _signed(value: float | None) -> str:
    if value is None:
        return ""
    return f"+ {num(value)}" if value >= 0 else f"− {num(-value)}"


def _bounds(crit: Criterion | None) -> tuple[float | None, float | None] | None:
    if crit is None:
        return None
    if crit.between is not None:
        return crit.between
    return (crit.min, crit.max)
