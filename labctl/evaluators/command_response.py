"""The ``command-response`` evaluator: how reliably and how fast devices carry out commands,
and whether a luminaire really dims to the level it was told.

Per device under test (every subject whose role is not ``reference``):

- **Success**: a command succeeds when its final status equals what the step expected
  (``CommandObserved.expect``, usually ``succeeded``); ``success_rate`` = successes / commands
  sent, with a 95 % Wilson interval. Counts by status (succeeded, failed, rejected, timeout).
- **Latency**: request published → final response (``finished_at − published_at``, controller
  wall clock), p50/p95/p99/max by ``numpy.percentile`` (linear), over the commands that got a
  final response. A timeout has no latency: it is a deadline miss (``deadline_misses``,
  ``deadline_miss_rate`` = misses / commands sent).
- **Dimming accuracy**: for each succeeded ``set_level`` command (options ``dimming_op``,
  ``level_param``), the readings of the ``power`` channel (W) that ARRIVED after the response
  plus ``settle_s`` (default 2 s, the luminaire ramping) and before the next command to the
  same device or the end of the measured window are reduced to their median (robust to meter
  noise and a stray spike), and the level is inferred by inverting the luminaire's nameplate
  curve from ``options.power``: P(L) = standby_w + rated_w · (L/100)^gamma, so
  L = 100 · ((P − standby_w)/rated_w)^(1/gamma), clipped to [0, 100]. Error = inferred −
  commanded, in percentage points: ``dimming_error_mean``, ``dimming_error_max_abs``,
  ``dimming_rmse``. A real driver's losses make its curve differ from this form; the figures
  then include that approximation. The curve is never calibrated from the run itself: a node
  that applies the wrong level must be caught, not fitted.
- **Breakdown**: commands are binned by the conditions of their measured window (the window
  a command falls in or, between windows, the next one to start — a trial sets conditions,
  sends commands, then measures their effect; after the last window, the last one). The
  limitation names where a criterion first fails, e.g. "… fails latency_p95 (1.4 s, target
  ≤ 1) when loss ≥ 5 %".
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

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
from labctl.evaluators.figures import percentiles, ratio, wilson_ci95
from labctl.evaluators.result import (
    BinResult,
    EvaluationResult,
    Limitation,
    Metric,
    SubjectResult,
)
from labctl.evaluators.windows import Window, WindowTracker
from labctl.observations import CommandObserved, Observation, ReadingObserved, WindowObserved
from labctl.trial.criteria import Criterion
from labctl.trial.spec import TrialSpec

UNITS: Mapping[str, str] = {
    "latency_p50": "s",
    "latency_p95": "s",
    "latency_p99": "s",
    "latency_max": "s",
    "dimming_error_mean": "pp",
    "dimming_error_max_abs": "pp",
    "dimming_rmse": "pp",
}
DIMMING_METRICS = ("dimming_error_mean", "dimming_error_max_abs", "dimming_rmse")
KNOWN_CRITERIA: tuple[str, ...] = (
    "success_rate",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "latency_max",
    "deadline_misses",
    "deadline_miss_rate",
    *DIMMING_METRICS,
)
"""Metric names a spec may put criteria on."""
STATUSES = ("succeeded", "failed", "rejected", "timeout")


class PowerCurve(BaseModel):
    """A luminaire's nameplate power curve: P(L) = standby_w + rated_w · (L/100)^gamma."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    rated_w: float = Field(gt=0)
    standby_w: float = Field(default=0.0, ge=0)
    gamma: float = Field(default=1.0, gt=0)

    def level(self, power_w: float) -> float:
        """The level (0–100) that draws ``power_w`` by this curve, clipped to the range."""
        x = max(0.0, (power_w - self.standby_w) / self.rated_w)
        return min(100.0, 100.0 * float(x ** (1.0 / self.gamma)))


class CommandResponseOptions(BaseModel):
    """``options:`` of a command-response trial."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    settle_s: float = Field(default=2.0, ge=0)
    """Wall seconds after a response before power readings count (the luminaire ramping)."""
    power: PowerCurve | None = None
    power_by_model: dict[str, PowerCurve] = Field(default_factory=dict)
    """Curves per device model (manifest ``model``), for trials comparing luminaires;
    ``power`` is used for models not listed."""
    """The nameplate curve; without it dimming accuracy is not computed."""
    power_channel: str = "power"
    dimming_op: str = "set_level"
    level_param: str = "level"
    condition_defaults: dict[str, float] = Field(default_factory=dict)
    """Condition values of windows that do not set them (e.g. ``{loss_pct: 0}``)."""
    min_commands_per_bin: int = Field(default=10, ge=1)
    """A condition bin with fewer commands is shown but not judged."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How one command ended, as the metrics need it."""

    status: str
    success: bool
    latency: float | None
    window: int | None
    dimming_error: float | None


class CommandResponseEvaluator:
    """Streaming command-response evaluator (see module). Keeps every command and the power
    readings (two floats each) until :meth:`result`, which may be called at any time."""

    name: ClassVar[str] = "command-response"

    def __init__(
        self,
        subjects: Sequence[Subject],
        criteria: Mapping[str, Criterion],
        *,
        options: CommandResponseOptions | None = None,
        conditions: Sequence[str] = (),
        bins: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        """Judge ``subjects`` (all but role ``reference``) against ``criteria``; ValueError
        in words for a criterion on an unknown metric or on dimming without a power curve."""
        self.options = options or CommandResponseOptions()
        self.criteria = dict(criteria)
        check_criteria(self.name, self.criteria, KNOWN_CRITERIA)
        dimming = [k for k in self.criteria if k in DIMMING_METRICS]
        if dimming and self.options.power is None and not self.options.power_by_model:
            raise ValueError(
                f"{self.name}: criteria on {', '.join(dimming)} need the luminaire's power "
                "curve in options, e.g. 'power: {rated_w: 120, standby_w: 3, gamma: 1.0}'"
            )
        self.subjects, self.judged = index_subjects(subjects)
        self.conditions = list(conditions)
        self.bins = {cond: check_edges(cond, edges) for cond, edges in (bins or {}).items()}
        self._windows = WindowTracker()
        self._commands: dict[str, list[CommandObserved]] = {k: [] for k in self.subjects}
        self._power_at: dict[str, array[float]] = {k: array("d") for k in self.subjects}
        self._power_w: dict[str, array[float]] = {k: array("d") for k in self.subjects}
        self._strangers = 0
        self._added = 0

    @classmethod
    def from_spec(cls, spec: TrialSpec, subjects: Sequence[Subject]) -> CommandResponseEvaluator:
        """Build from a trial spec: criteria, conditions, bins and ``options``."""
        return cls(
            subjects,
            spec.criteria,
            options=parse_options(cls.name, CommandResponseOptions, spec.options),
            conditions=spec.conditions,
            bins=spec.bins,
        )

    def add(self, subject: str, ts: float, values: Mapping[str, float]) -> None:
        """Readings without arrival times cannot be judged here; counted and noted."""
        self._added += 1

    def observe(self, obs: Observation) -> None:
        """Take one observation, in arrival order."""
        if isinstance(obs, WindowObserved):
            self._windows.observe(obs)
        elif isinstance(obs, CommandObserved):
            if obs.subject not in self.subjects:
                self._strangers += 1
                return
            self._commands[obs.subject].append(obs)
            self._windows.saw(None, obs.finished_at)
        elif isinstance(obs, ReadingObserved):
            if obs.subject not in self.subjects:
                self._strangers += 1
                return
            self._windows.saw(obs.ts, obs.received_at)
            watts = obs.values.get(self.options.power_channel)
            if watts is not None and math.isfinite(watts):
                self._power_at[obs.subject].append(obs.received_at)
                self._power_w[obs.subject].append(float(watts))

    # --- result ---------------------------------------------------------------------------

    def result(self) -> EvaluationResult:
        """Every metric, criterion outcome, breakdown and limitation so far."""
        notes = list(self._windows.notes)
        windows = self._windows.windows()
        opts = self.options
        curves = {"": opts.power} if opts.power is not None else {}
        curves.update(opts.power_by_model)
        if not curves:
            notes.append("no power curve in options: dimming accuracy not computed")
        for model, p in curves.items():
            notes.append(
                f"dimming level{f' of {model}' if model else ''} inferred from the median "
                f"{opts.power_channel} reading arriving ≥ {opts.settle_s:g} s after each "
                f"{opts.dimming_op} response, by inverting P = {p.standby_w:g} W + "
                f"{p.rated_w:g} W · (L/100)^{p.gamma:g} "
                "(nameplate curve; a driver's losses are approximated)"
            )
        if self._added:
            notes.append(
                f"{self._added} readings without arrival time (e.g. replayed from the spool) "
                "were not judged: commands are only known from the live run"
            )
        if self._strangers:
            notes.append(f"{self._strangers} observations of devices not in the trial ignored")
        bins = condition_bins(windows, self.conditions, self.bins, opts.condition_defaults)
        notes += [
            f"condition {c!r} was set in no measured window: not broken down"
            for c in self.conditions
            if c not in bins
        ]
        subjects = [self._judge(key, windows, bins, notes) for key in self.judged]
        return EvaluationResult(evaluator=self.name, subjects=subjects, notes=notes)

    def _judge(
        self,
        key: str,
        windows: Sequence[Window],
        bins: Mapping[str, Sequence[ConditionBin]],
        notes: list[str],
    ) -> SubjectResult:
        results = self._outcomes(key, windows, notes)
        metrics = _metrics(results)
        values = {m.name: m.value for m in metrics}
        crit = outcomes(self.criteria, values)
        breakdown: list[BinResult] = []
        limitations: list[Limitation] = []
        defaults = self.options.condition_defaults
        for cond, cbins in bins.items():
            rows = []
            for b in cbins:
                inside = [
                    o
                    for o in results
                    if o.window is not None
                    and (v := window_value(windows[o.window], cond, defaults)) is not None
                    and b.contains(v)
                ]
                figs = {m.name: m.value for m in _metrics(inside) if m.name in _BIN_METRICS}
                rows.append(BinFigures(b, len(inside), figs))
            got, lim = judge_breakdown(
                key, rows, self.criteria, UNITS, self.options.min_commands_per_bin
            )
            breakdown += got
            if lim is not None:
                limitations.append(lim)
        s = self.subjects[key]
        return SubjectResult(
            subject=key,
            vendor=s.vendor,
            device=s.device,
            model=s.model,
            metrics=metrics,
            criteria=crit,
            passed=all(c.passed for c in crit),
            breakdown=breakdown,
            limitations=limitations,
        )

    def _outcomes(self, key: str, windows: Sequence[Window], notes: list[str]) -> list[_Outcome]:
        cmds = sorted(self._commands[key], key=lambda c: c.published_at)
        at = np.frombuffer(self._power_at[key], dtype=np.float64)
        watts = np.frombuffer(self._power_w[key], dtype=np.float64)
        order = np.argsort(at, kind="stable")
        at, watts = at[order], watts[order]
        starts = [w.start_at for w in windows]
        out: list[_Outcome] = []
        unjudged = 0
        for i, c in enumerate(cmds):
            latency = None if c.status == "timeout" else c.finished_at - c.published_at
            error: float | None = None
            curve = self._curve(key)
            if curve is not None and self._is_dimming(c):
                lo = c.finished_at + self.options.settle_s
                hi = cmds[i + 1].published_at if i + 1 < len(cmds) else math.inf
                hi = min(hi, next((w.end_at for w in windows if w.end_at > lo), math.inf))
                sel = watts[np.searchsorted(at, lo, "right") : np.searchsorted(at, hi, "left")]
                if sel.size:
                    level = float(c.params[self.options.level_param])
                    error = curve.level(float(np.median(sel))) - level
                else:
                    unjudged += 1
            out.append(
                _Outcome(
                    c.status, c.status == c.expect, latency, _window_of(c, windows, starts), error
                )
            )
        if unjudged:
            notes.append(
                f"{key}: {unjudged} {self.options.dimming_op} command(s) had no "
                f"{self.options.power_channel} reading after settling; not judged for dimming"
            )
        return out

    def _curve(self, key: str) -> PowerCurve | None:
        subject = self.subjects.get(key)
        model = subject.model if subject is not None else ""
        return self.options.power_by_model.get(model, self.options.power)

    def _is_dimming(self, c: CommandObserved) -> bool:
        if c.op != self.options.dimming_op:
            return False
        level = c.params.get(self.options.level_param)
        if not isinstance(level, int | float) or isinstance(level, bool):
            return False
        return c.status == "succeeded" and math.isfinite(level)


_BIN_METRICS = frozenset(
    {
        "commands",
        "success_rate",
        "deadline_miss_rate",
        "latency_p50",
        "latency_p95",
        "latency_p99",
        "latency_max",
        "deadline_misses",
        *DIMMING_METRICS,
    }
)


def _window_of(
    c: CommandObserved, windows: Sequence[Window], starts: Sequence[float]
) -> int | None:
    """The window a command belongs to: the one it falls in, else the next to start, else
    the last (see module)."""
    if not windows:
        return None
    for i, w in enumerate(windows):
        if w.start_at <= c.published_at <= w.end_at:
            return i
    i = bisect.bisect_left(starts, c.published_at)
    return i if i < len(windows) else len(windows) - 1


def _metrics(results: Sequence[_Outcome]) -> list[Metric]:
    n = len(results)
    counts = {s: sum(1 for o in results if o.status == s) for s in STATUSES}
    ok = sum(1 for o in results if o.success)
    lat = [o.latency for o in results if o.latency is not None]
    p50, p95, p99 = percentiles(lat, (50, 95, 99))
    err = np.array([o.dimming_error for o in results if o.dimming_error is not None])
    misses = counts["timeout"]
    return [
        Metric(name="commands", value=float(n)),
        *(Metric(name=s, value=float(counts[s])) for s in STATUSES),
        Metric(name="success_rate", value=ratio(ok, n), ci95=wilson_ci95(ok, n)),
        Metric(name="deadline_misses", value=float(misses)),
        Metric(name="deadline_miss_rate", value=ratio(misses, n)),
        Metric(name="latency_p50", value=p50, unit="s"),
        Metric(name="latency_p95", value=p95, unit="s"),
        Metric(name="latency_p99", value=p99, unit="s"),
        Metric(name="latency_max", value=max(lat) if lat else None, unit="s"),
        Metric(name="dimming_n", value=float(err.size)),
        Metric(
            name="dimming_error_mean",
            value=float(err.mean()) if err.size else None,
            unit="pp",
        ),
        Metric(
            name="dimming_error_max_abs",
            value=float(np.abs(err).max()) if err.size else None,
            unit="pp",
        ),
        Metric(
            name="dimming_rmse",
            value=float(np.sqrt(np.mean(err**2))) if err.size else None,
            unit="pp",
        ),
    ]
