"""Routes durable readings of a run into its evaluator, within the measured windows."""

from __future__ import annotations

from dataclasses import dataclass, field

from labctl.bus.edge import EdgeResult
from labctl.evaluators.base import Evaluator
from labctl.readings import DeviceRef, Reading

MAX_EARLY_READINGS = 2_000_000
"""Readings kept while preflight chooses the devices (replayed into the evaluator after)."""


@dataclass
class ReadingRouter:
    """Routes durable readings into the evaluator, within the measured windows."""

    subjects: dict[DeviceRef, str] = field(default_factory=dict)
    windows: list[tuple[float, float]] = field(default_factory=list)
    evaluator: Evaluator | None = None
    latest: dict[DeviceRef, float] = field(default_factory=dict)
    early: list[Reading] = field(default_factory=list)
    evaluated: int = 0
    readings: int = 0

    def __call__(self, result: EdgeResult) -> None:
        for r in result.readings:
            self.readings += 1
            if r.ts > self.latest.get(r.device, 0.0):
                self.latest[r.device] = r.ts
            if self.evaluator is None:
                if len(self.early) < MAX_EARLY_READINGS:
                    self.early.append(r)
                continue
            self._route(r)

    def _route(self, r: Reading) -> None:
        subject = self.subjects.get(r.device)
        if subject is None or self.evaluator is None:
            return
        for lo, hi in self.windows:
            if lo <= r.ts < hi:
                self.evaluator.add(subject, r.ts, r.values)
                self.evaluated += 1
                return

    def start(self, evaluator: Evaluator, subjects: dict[DeviceRef, str]) -> None:
        """Begin evaluating; replay what arrived during preflight."""
        self.evaluator, self.subjects = evaluator, subjects
        early, self.early = self.early, []
        for r in early:
            self._route(r)
