"""What a conformance run produces: one result per check, and the report around them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """How one check ended."""

    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"
    SKIPPED = "skipped"
    """The operator asked not to run it (``--skip``)."""
    NOT_RUN = "not_run"
    """It could not run (the device was not online, no way to stop it, …)."""


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One item of the checklist."""

    id: str
    stage: str
    title: str
    required: bool = True
    """A device conforms only if every required check passes; the others are advice."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check, with the reason in words."""

    check: CheckSpec
    outcome: Outcome
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.check.id,
            "stage": self.check.stage,
            "title": self.check.title,
            "required": self.check.required,
            "outcome": str(self.outcome),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Report:
    """Everything a conformance run found out."""

    device: str
    broker: str
    results: tuple[CheckResult, ...]
    duration_s: float
    lab_errors: tuple[str, ...] = ()
    """Explanations the lab's controller published on ``_err`` for this device meanwhile."""

    @property
    def passed(self) -> bool:
        """Every required check passed, or was skipped on request."""
        return all(
            r.outcome in (Outcome.PASS, Outcome.SKIPPED) for r in self.results if r.check.required
        )

    @property
    def complete(self) -> bool:
        """Every check ran (nothing skipped or left out)."""
        return all(r.outcome in (Outcome.PASS, Outcome.FAIL) for r in self.results)

    def count(self, outcome: Outcome, *, required: bool = True) -> int:
        """How many (required) checks ended with ``outcome``."""
        return sum(1 for r in self.results if r.outcome is outcome and r.check.required == required)

    def summary(self) -> str:
        """One line: the verdict and the counts."""
        required = sum(1 for r in self.results if r.check.required)
        passed = self.count(Outcome.PASS)
        parts = [f"{passed} of {required} required checks passed"]
        for outcome, words in (
            (Outcome.FAIL, "failed"),
            (Outcome.NOT_RUN, "not run"),
            (Outcome.SKIPPED, "skipped on request"),
        ):
            n = self.count(outcome)
            if n:
                parts.append(f"{n} {words}")
        advice = self.count(Outcome.FAIL, required=False)
        if advice:
            parts.append(f"{advice} recommendation(s) not met")
        verdict = "CONFORMS" if self.passed else "DOES NOT CONFORM"
        if self.passed and not self.complete:
            verdict += " (partial run)"
        return f"{verdict}: " + ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``labctl vendor check --json``)."""
        return {
            "device": self.device,
            "broker": self.broker,
            "passed": self.passed,
            "complete": self.complete,
            "summary": self.summary(),
            "duration_s": round(self.duration_s, 3),
            "checks": [r.as_dict() for r in self.results],
            "lab_errors": list(self.lab_errors),
        }
