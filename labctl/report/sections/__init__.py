"""Per-evaluator report sections, registered by evaluator name.

The generic parts of a report (summary, criteria, limitations in words with the breakdown
table, data quality, provenance) come from the run record alone. What only an evaluator
knows — how to say in one sentence how well a candidate worked, and which plots show it —
comes from an :class:`EvaluatorSection` registered under the evaluator's name. A new
evaluator (``detection-accuracy``, ``command-response``, ``availability``) adds its own class
to :func:`section_registry`, or a third-party package registers one through the
``labctl.report_sections`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from labctl.evaluators.base import Evaluator
from labctl.evaluators.result import SubjectResult
from labctl.plugins import PluginRegistry
from labctl.report.model import Block, Section
from labctl.store.records import RunRecord
from labctl.trial.spec import TrialSpec

ENTRY_POINT_GROUP = "labctl.report_sections"


@dataclass(frozen=True)
class SectionContext:
    """What a section may use: the record, the spec it ran, and the evaluator re-fed with the
    run's spooled samples (None when the spool or the spec text is gone)."""

    record: RunRecord
    spec: TrialSpec | None
    evaluator: Evaluator | None


class EvaluatorSection(Protocol):
    """The evaluator-specific parts of a report."""

    evaluator: ClassVar[str]

    def effectiveness(self, ctx: SectionContext, subject: SubjectResult) -> str:
        """One sentence: how well ``subject`` worked, with its key figures."""
        ...

    def limitation_blocks(self, ctx: SectionContext) -> Sequence[Block]:
        """Plots (or tables) that show the condition breakdown."""
        ...

    def sections(self, ctx: SectionContext) -> Sequence[Section]:
        """Further sections, e.g. plots of candidate against reference."""
        ...


def section_registry() -> PluginRegistry[type[EvaluatorSection]]:
    """The built-in sections plus those installed through the entry-point group."""
    from labctl.report.sections.availability import AvailabilitySection
    from labctl.report.sections.command_response import CommandResponseSection
    from labctl.report.sections.sensor_accuracy import SensorAccuracySection

    registry = PluginRegistry[type[EvaluatorSection]]("report section")
    builtins: tuple[type[EvaluatorSection], ...] = (
        SensorAccuracySection,
        CommandResponseSection,
        AvailabilitySection,
    )
    for cls in builtins:
        registry.register(cls.evaluator, cls, f"{cls.__module__}.{cls.__qualname__}")
    registry.load(ENTRY_POINT_GROUP)
    return registry


def section_for(
    evaluator: str, registry: PluginRegistry[type[EvaluatorSection]]
) -> EvaluatorSection:
    """The section of ``evaluator``; the generic one when none is registered."""
    from labctl.report.sections.generic import GenericSection

    if evaluator in registry.names():
        return registry.get(evaluator)()
    return GenericSection()
