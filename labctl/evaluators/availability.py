"""The ``availability`` evaluator: is a device there, and does its data arrive, under network
faults? Judged over the measured windows, in device time (the windows' ``ts``), per device
under test (every subject whose role is not ``reference``).

- **Uptime** = time ``online`` / window length, from presence. A change is placed at the
  device clock ``ts`` of its state message when it has one, except ``lost``: that is the
  broker's Last Will, a payload fixed when the device connected, so its ``ts`` (if any) is
  stale and the ARRIVAL time is used, mapped to device time through the window edges (see
  :mod:`labctl.evaluators.windows`; the broker declares a device lost up to 1.5 keep-alives
  after it went silent, so outages seen through ``lost`` start late by up to that much). An
  ``offline``/``lost`` naming a session other than the current one (the last ``online``)
  describes a connection already replaced and is ignored (so a reconnect faster than the
  broker's Last Will shows no outage here: it counts as a reconnect, and its lost samples
  in ``completeness_nominal``). Before a device's first presence change it is taken as
  online (preflight only starts a trial with devices online).
- **Completeness** from ``(session, seq)``, duplicates ignored: per window and session,
  expected = max seq − min seq + 1, received = distinct seqs; ``completeness`` = received /
  expected. Samples lost at a session's ends (before its first / after its last sample
  received in the window) are invisible to this count, so ``completeness_nominal`` = samples
  received / (window length × nominal rate, ``Subject.interval_s``), capped at 1, is reported
  too. A ``completeness`` criterion judges the sequence figure; put a criterion on
  ``completeness_nominal`` to judge against the rate.
- **Reconnects**: per window, the sessions seen (the one current at the start, ``online``
  changes and readings inside) less one. **Outages**: not-online periods within the windows
  (one cut by a window edge counts in each window with its part inside). **Failures**:
  online → offline/lost changes within the windows; ``mtbf`` = online time / failures (None
  without failures); ``mttr`` = down time / outages.
- **Data latency**: arrival − device time per sample, p50/p99. Meaningless when the device
  clock runs accelerated: option ``latency: false`` turns it off (noted in the result).
- **Breakdown** by the windows' conditions (see :mod:`labctl.evaluators.condition_bins`).
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from labctl.evaluators.availability_stats import Presence, WindowStats, window_stats
from labctl.evaluators.base import Subject
from labctl.evaluators.breakdown import check_edges
from labctl.evaluators.condition_bins import (
    BinFigures,
    ConditionBin,
    check_criteria,
    condition_bins,
    index_subjects,
    judge_breakdown,
    outcomes,
    parse_options,
    window_value,
)
from labctl.evaluators.figures import percentiles, ratio
from labctl.evaluators.result import BinResult, EvaluationResult, Limitation, Metric, SubjectResult
from labctl.evaluators.windows import DeviceClock, Window, WindowTracker
from labctl.observations import Observation, PresenceObserved, ReadingObserved, WindowObserved
from labctl.trial.criteria import Criterion
from labctl.trial.spec import TrialSpec

UNITS: Mapping[str, str] = {"mtbf": "s", "mttr": "s", "latency_p50": "s", "latency_p99": "s"}
LATENCY_METRICS = ("latency_p50", "latency_p99")
KNOWN_CRITERIA: tuple[str, ...] = (
    "uptime",
    "completeness",
    "completeness_nominal",
    "reconnects",
    "outages",
    "failures",
    "mtbf",
    "mttr",
    *LATENCY_METRICS,
)
"""Metric names a spec may put criteria on."""
SPEED_WARNING = 1.5
"""Windows faster than this (device s per wall s) make data latency meaningless."""


class AvailabilityOptions(BaseModel):
    """``options:`` of an availability trial."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    latency: bool = True
    """Compute data latency (arrival − device time); off for an accelerated simulated rig."""
    condition_defaults: dict[str, float] = Field(default_factory=dict)
    """Condition values of windows that do not set them (e.g. ``{loss_pct: 0}``)."""
    min_samples_per_bin: int = Field(default=10, ge=1)
    """A condition bin with fewer samples received is shown but not judged."""


@dataclass
class _Device:
    """What is kept per device: its readings (compact arrays) and presence changes."""

    session_ids: dict[str, int] = field(default_factory=dict)
    ts: array[float] = field(default_factory=lambda: array("d"))
    received_at: array[float] = field(default_factory=lambda: array("d"))
    session: array[int] = field(default_factory=lambda: array("q"))
    seq: array[int] = field(default_factory=lambda: array("q"))
    presence: list[PresenceObserved] = field(default_factory=list)

    def add(self, r: ReadingObserved) -> None:
        sid = self.session_ids.setdefault(r.session, len(self.session_ids))
        self.ts.append(r.ts)
        self.received_at.append(r.received_at)
        self.session.append(sid)
        self.seq.append(r.seq)


class AvailabilityEvaluator:
    """Streaming availability evaluator (see module). Keeps four numbers per reading and
    every presence change until :meth:`result`, which may be called at any time."""

    name: ClassVar[str] = "availability"

    def __init__(
        self,
        subjects: Sequence[Subject],
        criteria: Mapping[str, Criterion],
        *,
        options: AvailabilityOptions | None = None,
        conditions: Sequence[str] = (),
        bins: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        """Judge ``subjects`` (all but role ``reference``) against ``criteria``; ValueError
        in words for a criterion on an unknown metric or on latency turned off."""
        self.options = options or AvailabilityOptions()
        self.criteria = dict(criteria)
        check_criteria(self.name, self.criteria, KNOWN_CRITERIA)
        off = [k for k in self.criteria if k in LATENCY_METRICS]
        if off and not self.options.latency:
            raise ValueError(
                f"{self.name}: criteria on {', '.join(off)} need data latency, which "
                "'options: {latency: false}' turns off"
            )
        self.subjects, self.judged = index_subjects(subjects)
        self.conditions = list(conditions)
        self.bins = {cond: check_edges(cond, edges) for cond, edges in (bins or {}).items()}
        self._windows = WindowTracker()
        self._devices = {k: _Device() for k in self.subjects}
        self._strangers = 0
        self._added = 0

    @classmethod
    def from_spec(cls, spec: TrialSpec, subjects: Sequence[Subject]) -> AvailabilityEvaluator:
        """Build from a trial spec: criteria, conditions, bins and ``options``."""
        return cls(
            subjects,
            spec.criteria,
            options=parse_options(cls.name, AvailabilityOptions, spec.options),
            conditions=spec.conditions,
            bins=spec.bins,
        )

    def add(self, subject: str, ts: float, values: Mapping[str, float]) -> None:
        """Readings without session, seq or arrival time cannot be judged here; counted."""
        self._added += 1

    def observe(self, obs: Observation) -> None:
        """Take one observation, in arrival order."""
        if isinstance(obs, WindowObserved):
            self._windows.observe(obs)
        elif isinstance(obs, ReadingObserved | PresenceObserved):
            dev = self._devices.get(obs.subject)
            if dev is None:
                self._strangers += 1
            elif isinstance(obs, ReadingObserved):
                self._windows.saw(obs.ts, obs.received_at)
                dev.add(obs)
            else:
                self._windows.saw(None, obs.at)
                dev.presence.append(obs)

    # --- result ---------------------------------------------------------------------------

    def result(self) -> EvaluationResult:
        """Every metric, criterion outcome, breakdown and limitation so far."""
        notes = list(self._windows.notes)
        windows = self._windows.windows()
        clock = DeviceClock(windows)
        if not self.options.latency:
            notes.append(
                "data latency not computed (options: latency: false — on an accelerated "
                "rig arrival minus device time is not meaningful)"
            )
        else:
            fast = [s for w in windows if (s := w.speed) is not None and s > SPEED_WARNING]
            if fast:
                notes.append(
                    f"windows ran at up to ×{max(fast):.3g} device speed: data latency mixes "
                    "two clocks there; set 'options: {latency: false}'"
                )
        if self._added:
            notes.append(
                f"{self._added} readings without session/seq/arrival time (e.g. replayed from "
                "the spool) were not judged"
            )
        if self._strangers:
            notes.append(f"{self._strangers} observations of devices not in the trial ignored")
        bins = condition_bins(windows, self.conditions, self.bins, self.options.condition_defaults)
        notes += [
            f"condition {c!r} was set in no measured window: not broken down"
            for c in self.conditions
            if c not in bins
        ]
        subjects = [self._judge(key, windows, clock, bins, notes) for key in self.judged]
        return EvaluationResult(evaluator=self.name, subjects=subjects, notes=notes)

    def _judge(
        self,
        key: str,
        windows: Sequence[Window],
        clock: DeviceClock,
        bins: Mapping[str, Sequence[ConditionBin]],
        notes: list[str],
    ) -> SubjectResult:
        defaults = self.options.condition_defaults
        dev = self._devices[key]
        presence = Presence.from_observations(dev.presence, clock)
        if presence.stale:
            notes.append(
                f"{key}: {presence.stale} offline/lost change(s) of a replaced session ignored"
            )
        per_window = [
            window_stats(
                w,
                np.frombuffer(dev.ts, dtype=np.float64),
                np.frombuffer(dev.received_at, dtype=np.float64),
                np.frombuffer(dev.session, dtype=np.int64),
                np.frombuffer(dev.seq, dtype=np.int64),
                presence,
                self.subjects[key].interval_s,
                list(dev.session_ids),  # ids are insertion indexes
            )
            for w in windows
        ]
        if any(st.assumed_online for st in per_window):
            notes.append(f"{key}: no presence change before a window; taken as online")
        if windows and self.subjects[key].interval_s is None:
            notes.append(f"{key}: no nominal rate: completeness_nominal not computed")
        metrics = self._metrics(per_window)
        values = {m.name: m.value for m in metrics}
        crit = outcomes(self.criteria, values)
        breakdown: list[BinResult] = []
        limitations: list[Limitation] = []
        for cond, cbins in bins.items():
            rows = []
            for b in cbins:
                inside = [
                    st
                    for w, st in zip(windows, per_window, strict=True)
                    if (v := window_value(w, cond, defaults)) is not None and b.contains(v)
                ]
                figs = {m.name: m.value for m in self._metrics(inside)}
                rows.append(BinFigures(b, sum(st.received for st in inside), figs))
            got, lim = judge_breakdown(
                key, rows, self.criteria, UNITS, self.options.min_samples_per_bin
            )
            breakdown += got
            if lim is not None:
                limitations.append(lim)
        subj = self.subjects[key]
        return SubjectResult(
            subject=key,
            vendor=subj.vendor,
            device=subj.device,
            model=subj.model,
            metrics=metrics,
            criteria=crit,
            passed=all(c.passed for c in crit),
            breakdown=breakdown,
            limitations=limitations,
        )

    def _metrics(self, stats: Sequence[WindowStats]) -> list[Metric]:
        """The figures over ``stats`` (windows), summed then divided."""
        length = sum(st.length for st in stats)
        online = sum(st.online_s for st in stats)
        down = sum(st.down_s for st in stats)
        failures = sum(st.failures for st in stats)
        outages = sum(st.outages for st in stats)
        received = sum(st.received for st in stats)
        expected = sum(st.expected_seq for st in stats)
        nominal = [st.expected_nominal for st in stats]
        completeness_nominal = None
        if stats and all(n is not None for n in nominal):
            r = ratio(received, sum(n for n in nominal if n is not None))
            completeness_nominal = None if r is None else min(1.0, r)
        p50: float | None = None
        p99: float | None = None
        if self.options.latency:
            lat = np.concatenate([st.latencies for st in stats]) if stats else np.empty(0)
            p50, p99 = percentiles(lat, (50, 99))
        return [
            Metric(name="window_s", value=length, unit="s"),
            Metric(name="uptime", value=ratio(online, length)),
            Metric(name="online_s", value=online, unit="s"),
            Metric(name="completeness", value=ratio(received, expected)),
            Metric(name="completeness_nominal", value=completeness_nominal),
            Metric(name="samples", value=float(received)),
            Metric(name="expected", value=float(expected)),
            Metric(name="missing", value=float(expected - received)),
            Metric(name="reconnects", value=float(sum(st.reconnects for st in stats))),
            Metric(name="outages", value=float(outages)),
            Metric(name="failures", value=float(failures)),
            Metric(name="mtbf", value=ratio(online, failures), unit="s"),
            Metric(name="mttr", value=ratio(down, outages), unit="s"),
            Metric(name="latency_p50", value=p50, unit="s"),
            Metric(name="latency_p99", value=p99, unit="s"),
        ]
