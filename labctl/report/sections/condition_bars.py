"""Bars of a condition breakdown (one panel per condition and criterion metric, one bar per
candidate and bin, the target dashed), shared by the sections of evaluators whose bins come
from the conditions a trial set (``command-response``, ``availability``)."""

from __future__ import annotations

from collections.abc import Mapping

from labctl.evaluators.result import EvaluationResult
from labctl.report import plots
from labctl.report.model import Block, Figure
from labctl.trial.criteria import Criterion

MAX_PANELS = 6


def breakdown_bars(
    ev: EvaluationResult,
    criteria: Mapping[str, Criterion],
    names: Mapping[str, str],
    units: Mapping[str, str],
    min_n: int,
    what: str,
) -> list[Block]:
    """A figure of the criterion metrics by condition bin: those that fail in some bin, or
    every criterion metric the bins carry when none fails. The metrics judged come from the
    run record; ``criteria`` (the spec's, when it could be read) add the target lines.
    ``what`` names the bin's items (``commands``, ``samples``) in the caption."""
    judged = list(dict.fromkeys(c.metric for s in ev.subjects for c in s.criteria))
    conditions = list(dict.fromkeys(b.condition for s in ev.subjects for b in s.breakdown))
    groups: list[plots.BarGroup] = []
    for cond in conditions:
        rows = {s.subject: [b for b in s.breakdown if b.condition == cond] for s in ev.subjects}
        labels = list(dict.fromkeys(b.label for r in rows.values() for b in r))
        carried = [m for m in judged if any(m in b.metrics for r in rows.values() for b in r)]
        failing = [m for m in carried if any(m in b.failed for r in rows.values() for b in r)]
        for metric in failing or carried:
            series = []
            for subject, bins in rows.items():
                by_label = {b.label: b for b in bins}
                series.append(
                    (
                        subject,
                        [
                            by_label[lab].metrics.get(metric) if lab in by_label else None
                            for lab in labels
                        ],
                        [lab in by_label and by_label[lab].n >= min_n for lab in labels],
                    )
                )
            unit = units.get(metric, "")
            crit = criteria.get(metric)
            groups.append(
                plots.BarGroup(
                    title=f"{names.get(metric, metric)} by {cond}",
                    bins=labels,
                    series=series,
                    target=None
                    if crit is None
                    else crit.between
                    if crit.between is not None
                    else (crit.min, crit.max),
                    ylabel=names.get(metric, metric) + (f" ({unit})" if unit else ""),
                )
            )
    if not groups:
        return []
    return [
        Figure(
            data_uri=plots.bin_bars(groups[:MAX_PANELS]),
            caption=(
                "Criterion figures per condition bin; dashed red lines are the target; "
                f"hatched bars have fewer than {min_n} {what} and are not judged."
            ),
            alt="bar chart of the condition breakdown",
        )
    ]
