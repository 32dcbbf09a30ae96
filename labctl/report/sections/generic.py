"""The fallback section for an evaluator without its own: sentences from the criteria."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from labctl.evaluators.breakdown import join_words
from labctl.evaluators.result import SubjectResult
from labctl.report.model import Block, Section
from labctl.report.numbers import num
from labctl.report.sections import SectionContext


def criteria_sentence(subject: SubjectResult, label: str) -> str:
    """``X meets all 4 criteria`` or ``X fails rmse (9.5, target ≤ 7); meets the other 3``."""
    failed = [c for c in subject.criteria if not c.passed]
    total = len(subject.criteria)
    if not failed:
        return f"{label} meets all {total} criteria"
    parts = [f"{c.metric} ({num(c.value)}, target {c.target})" for c in failed]
    rest = total - len(failed)
    tail = f"; it meets the other {rest}" if rest else ""
    return f"{label} fails {join_words(parts)}{tail}"


class GenericSection:
    """Effectiveness in words from the criteria outcomes; no plots."""

    evaluator: ClassVar[str] = "*"

    def effectiveness(self, ctx: SectionContext, subject: SubjectResult) -> str:
        """One sentence from the criteria outcomes."""
        return criteria_sentence(subject, subject.subject) + "."

    def limitation_blocks(self, ctx: SectionContext) -> Sequence[Block]:
        """None: the breakdown table is shown by the generic report."""
        return []

    def sections(self, ctx: SectionContext) -> Sequence[Section]:
        """None."""
        return []
