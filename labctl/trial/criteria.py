"""Acceptance criteria: ``{between: [a, b]}``, ``{min: x}`` or ``{max: x}``."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, model_validator


class Criterion(BaseModel):
    """One target a metric must meet. Exactly one of ``between``, ``min``, ``max``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    between: tuple[float, float] | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Criterion:
        given = [k for k in ("between", "min", "max") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a criterion needs exactly one of 'between: [low, high]', 'min: x' or 'max: x'"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.between is not None and self.between[0] > self.between[1]:
            raise ValueError(f"'between' must be [low, high]; got {list(self.between)}")
        return self

    def holds(self, value: float | None) -> bool:
        """True when ``value`` meets the target; a missing or non-finite value never does."""
        if value is None or not math.isfinite(value):
            return False
        if self.between is not None:
            return self.between[0] <= value <= self.between[1]
        if self.min is not None:
            return value >= self.min
        assert self.max is not None
        return value <= self.max

    def describe(self) -> str:
        """The target in words for tables: ``0.65–1.35``, ``≥ 0.7``, ``≤ 7``."""
        if self.between is not None:
            return f"{_fmt(self.between[0])}–{_fmt(self.between[1])}"
        if self.min is not None:
            return f"≥ {_fmt(self.min)}"
        assert self.max is not None
        return f"≤ {_fmt(self.max)}"


def _fmt(x: float) -> str:
    return f"{x:g}"
