"""What an evaluator yields: metrics with units, criteria outcomes, breakdowns, limitations.

These records are immutable and serialisable; the run store keeps them as JSON and reports are
built from them, so every number a department reads comes from exactly one place.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Metric(_Frozen):
    """One computed figure."""

    name: str
    value: float | None
    unit: str = ""
    ci95: tuple[float, float] | None = None
    """95 % confidence interval, where the evaluator can give one."""


class CriterionOutcome(_Frozen):
    """A metric against its target."""

    metric: str
    value: float | None
    target: str
    passed: bool


class BinResult(_Frozen):
    """Metrics computed on the data that fell in one condition bin."""

    condition: str
    label: str
    """The bin in words, e.g. ``RH ≥ 85 %``."""
    lower: float | None
    upper: float | None
    n: int
    metrics: dict[str, float | None]
    failed: list[str] = Field(default_factory=list)
    """Criteria that do not hold in this bin (empty when too few pairs to judge)."""


class Limitation(_Frozen):
    """Where a criterion first stops holding, in words."""

    subject: str
    condition: str
    bin: str
    criteria: list[str]
    text: str


class SubjectResult(_Frozen):
    """Everything an evaluator found about one device under test."""

    subject: str
    """``vendor/device``."""
    vendor: str
    device: str
    model: str = ""
    metrics: list[Metric]
    by_averaging: dict[str, list[Metric]] = Field(default_factory=dict)
    criteria: list[CriterionOutcome]
    passed: bool
    breakdown: list[BinResult] = Field(default_factory=list)
    limitations: list[Limitation] = Field(default_factory=list)

    def metric(self, name: str) -> Metric | None:
        """The primary-averaging metric called ``name``."""
        return next((m for m in self.metrics if m.name == name), None)


class GroupResult(_Frozen):
    """Figures across several units of one model (e.g. EPA precision)."""

    group: str
    members: list[str]
    metrics: list[Metric]


class EvaluationResult(_Frozen):
    """The evaluator's answer for a whole trial."""

    evaluator: str
    subjects: list[SubjectResult]
    groups: list[GroupResult] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every subject meets every criterion."""
        return bool(self.subjects) and all(s.passed for s in self.subjects)
