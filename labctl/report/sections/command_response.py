"""Report section of the ``command-response`` evaluator: a sentence per device, the
breakdown bars, command latency and outcome per device, dimming accuracy per device."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import ClassVar

from labctl.evaluators.breakdown import join_words
from labctl.evaluators.command_response import UNITS, CommandResponseOptions
from labctl.evaluators.result import SubjectResult
from labctl.report.model import Block, Cell, Paragraph, Section, Table
from labctl.report.numbers import cell, num
from labctl.report.sections import SectionContext
from labctl.report.sections.condition_bars import breakdown_bars
from labctl.report.sections.generic import criteria_sentence

NAMES = {
    "success_rate": "success rate",
    "latency_p50": "latency p50",
    "latency_p95": "latency p95",
    "latency_p99": "latency p99",
    "latency_max": "latency max",
    "deadline_misses": "deadline misses",
    "deadline_miss_rate": "deadline-miss rate",
    "dimming_error_mean": "mean dimming error",
    "dimming_error_max_abs": "largest dimming error",
    "dimming_rmse": "dimming RMSE",
}
LATENCY_COLUMNS = (
    ("commands", "commands", 0),
    ("succeeded", "succeeded", 0),
    ("failed", "failed", 0),
    ("rejected", "rejected", 0),
    ("timeout", "timeouts", 0),
    ("success_rate", "success rate", 4),
    ("latency_p50", "p50 (s)", 3),
    ("latency_p95", "p95 (s)", 3),
    ("latency_p99", "p99 (s)", 3),
    ("latency_max", "max (s)", 3),
    ("deadline_misses", "deadline misses", 0),
)
DIMMING_COLUMNS = (
    ("dimming_n", "levels judged", 0),
    ("dimming_error_mean", "mean error (pp)", 2),
    ("dimming_error_max_abs", "largest |error| (pp)", 2),
    ("dimming_rmse", "RMSE (pp)", 2),
)


def _v(subject: SubjectResult, name: str) -> float | None:
    m = subject.metric(name)
    return m.value if m is not None else None


def _options(ctx: SectionContext) -> CommandResponseOptions:
    if ctx.spec is not None:
        with contextlib.suppress(ValueError):
            return CommandResponseOptions.model_validate(ctx.spec.options)
    return CommandResponseOptions()


class CommandResponseSection:
    """Commands: success, latency, deadline misses, dimming accuracy."""

    evaluator: ClassVar[str] = "command-response"

    def effectiveness(self, ctx: SectionContext, subject: SubjectResult) -> str:
        """E.g. ``LP-1 acme/lp-01 meets all 3 criteria — 99.5 % of 200 commands answered as
        expected, latency p50/p95/p99 0.21/0.48/0.9 s, 1 deadline miss; dimming error at most
        2.1 pp over 13 levels.``"""
        label = f"{subject.model} {subject.subject}".strip()
        n = _v(subject, "commands") or 0.0
        rate = _v(subject, "success_rate")
        misses = _v(subject, "deadline_misses") or 0.0
        text = criteria_sentence(subject, label)
        text += (
            f" — {num(None if rate is None else 100 * rate, 2)} % of {num(n, 0)} commands "
            "answered as expected, latency p50/p95/p99 "
            + "/".join(num(_v(subject, f"latency_p{q}")) for q in (50, 95, 99))
            + f" s, {num(misses, 0)} deadline miss{'es' if misses != 1 else ''}"
        )
        levels = _v(subject, "dimming_n") or 0.0
        if levels:
            text += (
                f"; dimming error at most {num(_v(subject, 'dimming_error_max_abs'), 2)} pp "
                f"(mean {num(_v(subject, 'dimming_error_mean'), 2)} pp) over "
                f"{num(levels, 0)} level{'s' if levels != 1 else ''}"
            )
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
        return breakdown_bars(
            ev, criteria, NAMES, UNITS, _options(ctx).min_commands_per_bin, "commands"
        )

    def sections(self, ctx: SectionContext) -> Sequence[Section]:
        """Outcome and latency per device; dimming accuracy per device when judged."""
        ev = ctx.record.evaluation
        if ev is None or not ev.subjects:
            return []
        blocks: list[Block] = [
            _table(
                ev.subjects,
                LATENCY_COLUMNS,
                "commands",
                "Commands per device by final status; latency from the request's publication "
                "to the final response (controller clock), over commands that got one; a "
                "timeout is a deadline miss and has no latency.",
            )
        ]
        if any(_v(s, "dimming_n") for s in ev.subjects):
            opts = _options(ctx)
            curve = opts.power
            how = (
                f"P = {curve.standby_w:g} W + {curve.rated_w:g} W · (L/100)^{curve.gamma:g}"
                if curve is not None
                else "the nameplate power curve"
            )
            blocks.append(
                _table(
                    ev.subjects,
                    DIMMING_COLUMNS,
                    "dimming",
                    f"Level inferred from the median metered power {opts.settle_s:g} s or more "
                    f"after each {opts.dimming_op} response, by inverting {how}; error = "
                    "inferred − commanded, in percentage points.",
                )
            )
        else:
            blocks.append(Paragraph("No dimming command was judged in this trial."))
        return [Section("commands", "Command response per device", blocks)]


def _table(
    subjects: Sequence[SubjectResult],
    columns: Sequence[tuple[str, str, int]],
    key: str,
    caption: str,
) -> Table:
    return Table(
        columns=["device", *(title for _, title, _ in columns)],
        rows=[
            [Cell(s.subject)]
            + [
                cell(
                    _v(s, name),
                    key=f"{key}/{s.subject}/{name}",
                    unit=UNITS.get(name, ""),
                    digits=digits,
                )
                for name, _, digits in columns
            ]
            for s in subjects
        ],
        caption=caption,
    )
