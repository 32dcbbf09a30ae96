"""Routes what a run's devices send (durable readings, presence, detections) into its
evaluator, within the measured windows.

Plain evaluators get readings through ``add``; observing evaluators (see
``labctl.evaluators.base.ObservingEvaluator``) get every reading of a window as a
:class:`~labctl.observations.ReadingObserved`, and presence and detections of the run's
devices as observations, whatever the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labctl.bus.edge import EdgeResult
from labctl.evaluators.base import Evaluator, ObservingEvaluator
from labctl.observations import (
    DetectedObject,
    DetectionsObserved,
    Observation,
    PresenceObserved,
    ReadingObserved,
)
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
    detections: int = 0
    horizon: float = float("-inf")
    """Device time before which no window can still be declared: unmatched readings from
    here on are kept (bounded) for the next window, since an accelerated rig runs ahead."""
    _observer: ObservingEvaluator | None = None

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
        observer = self._observer
        if observer is None:
            return
        for p in result.presence:
            subject = self.subjects.get(p.device)
            if subject is not None and p.state != "manifest":
                observer.observe(
                    PresenceObserved(subject, p.state, p.session, p.received_ns / 1e9, p.ts)
                )
        for e in result.detections:
            subject = self.subjects.get(e.device)
            if subject is None:
                continue
            d = e.detections
            self.detections += 1
            observer.observe(
                DetectionsObserved(
                    subject,
                    d.frame,
                    d.seq,
                    d.ts,
                    e.received_ns / 1e9,
                    tuple(DetectedObject(o.bbox, o.label, o.score, o.ref) for o in d.objects),
                )
            )

    def _route(self, r: Reading) -> None:
        subject = self.subjects.get(r.device)
        if subject is None or self.evaluator is None:
            return
        for lo, hi in self.windows:
            if lo <= r.ts < hi:
                if self._observer is not None:
                    self._observer.observe(
                        ReadingObserved(
                            subject, r.stream, r.session, r.seq, r.ts, r.received_ns / 1e9, r.values
                        )
                    )
                else:
                    self.evaluator.add(subject, r.ts, r.values)
                self.evaluated += 1
                return
        if r.ts >= self.horizon and len(self.early) < MAX_EARLY_READINGS:
            self.early.append(r)

    def observe(self, obs: Observation) -> None:
        """Pass an observation the runner made (commands, frames, windows) to the evaluator,
        when it takes observations."""
        if self._observer is not None:
            self._observer.observe(obs)

    def start(self, evaluator: Evaluator, subjects: dict[DeviceRef, str]) -> None:
        """Begin evaluating. What arrived during preflight waits for the first window."""
        self.evaluator, self.subjects = evaluator, subjects
        self._observer = evaluator if isinstance(evaluator, ObservingEvaluator) else None
        if self.windows:
            self._replay_early()

    def add_window(self, lo: float, hi: float) -> None:
        """Measure device time ``[lo, hi)``; readings of it that arrived early are replayed."""
        self.windows.append((lo, hi))
        self.advance(lo)

    def advance(self, t: float) -> None:
        """No window will start before device time ``t`` any more."""
        self.horizon = max(self.horizon, t)
        if self.evaluator is not None:
            self._replay_early()

    def _replay_early(self) -> None:
        early, self.early = self.early, []
        for r in early:
            if r.ts >= self.horizon or any(lo <= r.ts < hi for lo, hi in self.windows):
                self._route(r)
