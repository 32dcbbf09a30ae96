"""The ``sensor-accuracy`` evaluator: collocated sensors against a reference (US EPA 2021).

Each candidate is compared with the one reference subject on paired averages:

1. 1-hour values: mean of the samples in each UTC clock hour, kept when more than 75 % of the
   expected samples are present (see :mod:`labctl.evaluators.averaging`).
2. Longer periods (24 h = UTC calendar days, or any whole number of hours): mean of the valid
   1-hour values, kept when more than 75 % of the hours are valid.
3. Pairs: candidate and reference values with the same period start, both present.
4. On the pairs: OLS slope and intercept (candidate = y, reference = x) with 95 % confidence
   intervals, R² (squared Pearson r), RMSE, NRMSE, bias, N and the candidate's min/max/mean.

The metrics at the spec's averaging are judged against the criteria. With these rules the
figures of EPA's sensortoolkit example reproduce to the published decimals (see
``tests/e2e/test_eval_sensor_epa.py``). Units of one model are also compared with each other
(EPA precision: SD and CV), and each candidate is broken down by condition bins to find where
it stops meeting its targets.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from labctl.evaluators.averaging import (
    HOUR_S,
    FloatArray,
    HourlyAccumulator,
    HourTable,
    IntArray,
    Series,
    averaging_hours,
    averaging_label,
    block_means,
    expected_per_hour,
    hourly_means,
    infer_interval,
    pair,
)
from labctl.evaluators.base import Subject
from labctl.evaluators.breakdown import (
    DEFAULT_EDGES,
    MIN_PAIRS_TO_JUDGE,
    Bin,
    check_edges,
    limitation_text,
    make_bins,
)
from labctl.evaluators.result import (
    BinResult,
    CriterionOutcome,
    EvaluationResult,
    GroupResult,
    Limitation,
    Metric,
    SubjectResult,
)
from labctl.evaluators.stats import PairStats, epa_precision, pair_stats
from labctl.trial.criteria import Criterion
from labctl.trial.spec import TrialSpec

PAIR_METRICS: tuple[str, ...] = ("slope", "intercept", "r2", "rmse", "nrmse", "bias")
"""Metrics computed from the pairs alone; these are also judged per condition bin."""
KNOWN_CRITERIA: tuple[str, ...] = (*PAIR_METRICS, "completeness")
"""Metric names a spec may put criteria on."""

DEFAULT_UNIT = "µg/m³"

BoolArray = npt.NDArray[np.bool_]


def epa_pm25_criteria() -> dict[str, Criterion]:
    """The US EPA 2021 PM2.5 sensor targets for 24-hour averages (a fresh dict each call)."""
    return {
        "slope": Criterion(between=(0.65, 1.35)),
        "intercept": Criterion(between=(-5.0, 5.0)),
        "r2": Criterion(min=0.70),
        "rmse": Criterion(max=7.0),
    }


class SensorAccuracyEvaluator:
    """Streaming collocation evaluator: candidates (role ``dut``) against one reference.

    Memory is O(hours) per subject: samples are folded into hourly sums in :meth:`add` and all
    statistics are computed in :meth:`result`, which may be called at any time.
    """

    name: ClassVar[str] = "sensor-accuracy"

    def __init__(
        self,
        subjects: Sequence[Subject],
        channel: str = "pm25",
        *,
        averaging_s: float = 86400.0,
        criteria: Mapping[str, Criterion] | None = None,
        conditions: Sequence[str] = (),
        bins: Mapping[str, Sequence[float]] | None = None,
        unit: str = DEFAULT_UNIT,
        period: tuple[float, float] | None = None,
    ) -> None:
        """Judge ``subjects`` on ``channel``.

        ``averaging_s`` is the averaging the criteria apply to (a whole number of hours);
        ``criteria`` default to the EPA 2021 24-h PM2.5 targets; ``conditions`` are channels
        to break the 1-hour pairs down by, with bin edges from ``bins`` or the defaults
        (rh: 60, 75, 85 %; temperature: 10, 20, 30 °C). ``period`` (epoch seconds, start and
        end) is the trial period for completeness; by default the span of the reference data.
        Raises ValueError in words for anything that cannot be evaluated.
        """
        self.channel = channel
        self.unit = unit
        self.averaging_hours = averaging_hours(averaging_s)
        self.criteria: dict[str, Criterion] = dict(
            epa_pm25_criteria() if criteria is None else criteria
        )
        unknown = [k for k in self.criteria if k not in KNOWN_CRITERIA]
        if unknown:
            raise ValueError(
                f"sensor-accuracy has no metric called {', '.join(map(repr, unknown))} to judge; "
                f"criteria can be set on: {', '.join(KNOWN_CRITERIA)}"
            )
        if period is not None and not period[0] < period[1]:
            raise ValueError(f"the trial period must end after it starts, got {period}")
        self.period = period
        self._notes: list[str] = []
        self._bins: dict[str, list[Bin]] = {}
        given_bins = dict(bins or {})
        for cond in dict.fromkeys(conditions):  # unique, in order
            if cond == channel:
                raise ValueError(f"condition {cond!r} is the channel being evaluated")
            if cond in given_bins:
                edges = check_edges(cond, given_bins[cond])
            elif cond in DEFAULT_EDGES:
                edges = DEFAULT_EDGES[cond]
            else:
                self._notes.append(
                    f"condition {cond!r} has no bin edges (give 'bins: {{{cond}: [...]}}'); "
                    "not broken down"
                )
                continue
            self._bins[cond] = make_bins(cond, edges)

        self.subjects: dict[str, Subject] = {}
        for s in subjects:
            if s.key in self.subjects:
                raise ValueError(f"subject {s.key!r} is given twice")
            self.subjects[s.key] = s
        refs = [s.key for s in subjects if s.role == "reference"]
        if subjects and len(refs) != 1:
            raise ValueError(
                "sensor-accuracy needs exactly one subject with role 'reference', "
                f"got {len(refs)}" + (f" ({', '.join(refs)})" if refs else "")
            )
        self.reference: str | None = refs[0] if refs else None
        self.candidates = [s.key for s in subjects if s.role != "reference"]
        self._acc = {s.key: HourlyAccumulator(channel, tuple(self._bins)) for s in subjects}

    @classmethod
    def from_spec(cls, spec: TrialSpec, subjects: Sequence[Subject]) -> SensorAccuracyEvaluator:
        """Build from a trial spec: channel of the ``reference`` selector, averaging, criteria,
        conditions and bins from the spec. Raises ValueError in words."""
        refs = [sel for sel in spec.devices.values() if sel.role == "reference"]
        if not refs:
            raise ValueError(
                "sensor-accuracy needs a device selector with role 'reference' "
                "(e.g. reference: {role: reference, channel: pm25})"
            )
        channel = refs[0].channel
        others = sorted({sel.channel for sel in spec.devices.values()} - {channel})
        if others:
            raise ValueError(
                f"sensor-accuracy compares one channel; the reference uses {channel!r} "
                f"but other devices use {', '.join(map(repr, others))}"
            )
        return cls(
            subjects,
            channel,
            averaging_s=spec.averaging,
            criteria=spec.criteria,
            conditions=spec.conditions,
            bins=spec.bins,
        )

    def add(self, subject: str, ts: float, values: Mapping[str, float]) -> None:
        """Take one sample of ``subject`` at epoch seconds ``ts``; any order is fine."""
        acc = self._acc.get(subject)
        if acc is None:
            raise ValueError(f"sensor-accuracy was not told about subject {subject!r}")
        acc.add(ts, values)

    def averages(self, hours: int) -> dict[str, Series]:
        """Valid ``hours``-hour averages of every subject (1: hourly means), by the same rules
        as :meth:`result`; for plots (time series, candidate-vs-reference pairs)."""
        out: dict[str, Series] = {}
        for key, acc in self._acc.items():
            table = acc.table()
            declared = self.subjects[key].interval_s
            interval = declared if declared and declared > 0 else infer_interval(table)
            hourly = hourly_means(table, expected_per_hour(interval or float(HOUR_S)))
            out[key] = block_means(hourly, hours)
        return out

    # --- result ---------------------------------------------------------------------------

    def result(self) -> EvaluationResult:
        """Every metric, criterion outcome, precision group, breakdown and limitation so far."""
        notes = list(self._notes)
        if self.reference is None:
            notes.append("no reference subject: nothing to compare")
            return EvaluationResult(evaluator=self.name, subjects=[], notes=notes)
        tables = {key: acc.table() for key, acc in self._acc.items()}
        expected: dict[str, float] = {}  # per hour, for the 75 % rule (at least 1)
        rate: dict[str, float] = {}  # per hour, for completeness (below 1 for slow data)
        for key, table in tables.items():
            declared = self.subjects[key].interval_s
            interval = declared if declared and declared > 0 else infer_interval(table)
            if interval is None:
                interval = float(HOUR_S)
                if table.samples:
                    notes.append(f"{key}: sampling interval unknown (one sample); assumed 1 h")
            expected[key] = expected_per_hour(interval)
            rate[key] = HOUR_S / interval

        levels = sorted({1, 24, self.averaging_hours})
        series: dict[int, dict[str, Series]] = {k: {} for k in levels}
        for key, table in tables.items():
            hourly = hourly_means(table, expected[key])
            for k in levels:
                series[k][key] = block_means(hourly, k)

        ref = self.reference
        span = self._period_hours(tables[ref])
        if span is None:
            notes.append(f"reference {ref} has no {self.channel} data: no trial period")
        else:
            got = _samples_in(tables[ref], span)
            notes.append(
                f"reference {ref}: {got} of {_expected_in(span, rate[ref]):.0f} expected "
                f"{self.channel} samples; "
                + ", ".join(
                    f"{len(series[k][ref])} valid {averaging_label(k)} periods" for k in levels
                )
            )
        cond_source = self._condition_sources(tables, notes)

        subjects = [
            self._judge(key, tables, rate, series, levels, span, cond_source)
            for key in self.candidates
        ]
        return EvaluationResult(
            evaluator=self.name, subjects=subjects, groups=self._precision(series), notes=notes
        )

    def _period_hours(self, ref_table: HourTable) -> tuple[int, int] | None:
        """First and last hour (inclusive) of the trial period."""
        if self.period is not None:
            start, end = self.period
            return int(start // HOUR_S), math.ceil(end / HOUR_S) - 1
        hours = ref_table.hours[ref_table.counts > 0]
        if hours.size == 0:
            return None
        return int(hours[0]), int(hours[-1])

    def _condition_sources(
        self, tables: Mapping[str, HourTable], notes: list[str]
    ) -> dict[str, bool]:
        """Per condition: True when the reference reports it (then its values bin every
        candidate's pairs, so all candidates are judged under the same conditions)."""
        assert self.reference is not None
        out: dict[str, bool] = {}
        for cond in self._bins:
            ref_has = bool(tables[self.reference].conditions[cond][1].sum() > 0)
            out[cond] = ref_has
            notes.append(
                f"{cond} bins use the hourly {cond} of "
                + ("the reference" if ref_has else "each candidate (the reference has none)")
            )
        return out

    def _judge(
        self,
        key: str,
        tables: Mapping[str, HourTable],
        rate: Mapping[str, float],
        series: Mapping[int, Mapping[str, Series]],
        levels: Sequence[int],
        span: tuple[int, int] | None,
        cond_source: Mapping[str, bool],
    ) -> SubjectResult:
        assert self.reference is not None
        ref = self.reference
        completeness: float | None = None
        if span is not None:
            exp = _expected_in(span, rate[key])
            # Duplicated samples could push the ratio past 1; completeness means "at most all".
            completeness = min(1.0, _samples_in(tables[key], span) / exp) if exp else None
        by_averaging: dict[str, list[Metric]] = {}
        for k in levels:
            _, x, y = pair(series[k][ref], series[k][key])
            valid: float | None = None
            if span is not None:
                first, last = span[0] // k, span[1] // k
                blocks = series[k][key].starts // k
                valid = float(np.count_nonzero((blocks >= first) & (blocks <= last))) / (
                    last - first + 1
                )
            by_averaging[averaging_label(k)] = self._metrics(pair_stats(x, y), completeness, valid)

        primary = by_averaging[averaging_label(self.averaging_hours)]
        values = {m.name: m.value for m in primary}
        outcomes = [
            CriterionOutcome(
                metric=name,
                value=values.get(name),
                target=crit.describe(),
                passed=crit.holds(values.get(name)),
            )
            for name, crit in self.criteria.items()
        ]
        breakdown, limitations = self._breakdown(key, tables, series[1], cond_source)
        s = self.subjects[key]
        return SubjectResult(
            subject=key,
            vendor=s.vendor,
            device=s.device,
            model=s.model,
            metrics=primary,
            by_averaging=by_averaging,
            criteria=outcomes,
            passed=all(o.passed for o in outcomes),
            breakdown=breakdown,
            limitations=limitations,
        )

    def _metrics(
        self, st: PairStats, completeness: float | None, valid: float | None
    ) -> list[Metric]:
        u = self.unit
        return [
            Metric(name="n", value=float(st.n)),
            Metric(name="r2", value=st.r2),
            Metric(name="slope", value=st.slope, ci95=st.slope_ci95),
            Metric(name="intercept", value=st.intercept, unit=u, ci95=st.intercept_ci95),
            Metric(name="rmse", value=st.rmse, unit=u),
            Metric(name="nrmse", value=st.nrmse, unit="%"),
            Metric(name="bias", value=st.bias, unit=u),
            Metric(name="sensor_min", value=st.y_min, unit=u),
            Metric(name="sensor_max", value=st.y_max, unit=u),
            Metric(name="sensor_mean", value=st.y_mean, unit=u),
            Metric(name="completeness", value=completeness),
            Metric(name="valid_periods", value=valid),
        ]

    def _breakdown(
        self,
        key: str,
        tables: Mapping[str, HourTable],
        hourly: Mapping[str, Series],
        cond_source: Mapping[str, bool],
    ) -> tuple[list[BinResult], list[Limitation]]:
        """Judge the 1-HOUR pairs per condition bin and name the first failing bin.

        Bins use 1-hour pairs, not the spec's averaging: a day mixes humid nights with dry
        afternoons, so a daily mean of RH says little about the conditions the sensor saw.
        """
        assert self.reference is not None
        starts, x, y = pair(hourly[self.reference], hourly[key])
        judged = [(n, c) for n, c in self.criteria.items() if n in PAIR_METRICS]
        units = {"intercept": self.unit, "rmse": self.unit, "bias": self.unit, "nrmse": "%"}
        results: list[BinResult] = []
        limitations: list[Limitation] = []
        for cond, bins in self._bins.items():
            source = tables[self.reference if cond_source[cond] else key]
            cs = source.condition_means(cond)
            has, cv = _lookup(cs, starts)
            first_failing: Limitation | None = None
            for b in bins:
                lo = -np.inf if b.lower is None else b.lower
                hi = np.inf if b.upper is None else b.upper
                m = has & (cv >= lo) & (cv < hi)
                st = pair_stats(x[m], y[m])
                metrics: dict[str, float | None] = {n: getattr(st, n) for n in PAIR_METRICS}
                failures: list[tuple[str, float | None, str, str]] = []
                if st.n >= MIN_PAIRS_TO_JUDGE:
                    failures = [
                        (n, metrics[n], units.get(n, ""), c.describe())
                        for n, c in judged
                        if not c.holds(metrics[n])
                    ]
                results.append(
                    BinResult(
                        condition=cond,
                        label=b.label,
                        lower=b.lower,
                        upper=b.upper,
                        n=st.n,
                        metrics=metrics,
                        failed=[f[0] for f in failures],
                    )
                )
                if failures and first_failing is None:
                    first_failing = Limitation(
                        subject=key,
                        condition=cond,
                        bin=b.label,
                        criteria=[f[0] for f in failures],
                        text=limitation_text(key, failures, b.label),
                    )
            if first_failing is not None:
                limitations.append(first_failing)
        return results, limitations

    def _precision(self, series: Mapping[int, Mapping[str, Series]]) -> list[GroupResult]:
        """EPA precision (SD, CV) across candidates that share a model, on the spec averaging's
        periods where every unit of the model is valid."""
        models: dict[str, list[str]] = {}
        for key in self.candidates:
            model = self.subjects[key].model
            if model:
                models.setdefault(model, []).append(key)
        k = self.averaging_hours
        groups = []
        for model, members in models.items():
            if len(members) < 2:
                continue
            per = [series[k][m] for m in members]
            common = functools.reduce(np.intersect1d, [s.starts for s in per])
            matrix = np.column_stack(
                [s.values[np.searchsorted(s.starts, common)] for s in per]
            ).reshape(len(common), len(per))
            sd, cv = epa_precision(matrix)
            groups.append(
                GroupResult(
                    group=model,
                    members=members,
                    metrics=[
                        Metric(name="sd", value=sd, unit=self.unit),
                        Metric(name="cv", value=cv, unit="%"),
                        Metric(name="n", value=float(len(common))),
                        Metric(name="averaging", value=float(k), unit="h"),
                    ],
                )
            )
        return groups


def _lookup(series: Series, starts: IntArray) -> tuple[BoolArray, FloatArray]:
    """Values of ``series`` at ``starts``: (present mask, values with NaN where absent)."""
    if len(series) == 0:
        return np.zeros(starts.shape, dtype=bool), np.full(starts.shape, np.nan)
    idx = np.minimum(np.searchsorted(series.starts, starts), len(series) - 1)
    has = series.starts[idx] == starts
    return has, np.where(has, series.values[idx], np.nan)


def _samples_in(table: HourTable, span: tuple[int, int]) -> int:
    inside = (table.hours >= span[0]) & (table.hours <= span[1])
    return int(table.counts[inside].sum())


def _expected_in(span: tuple[int, int], per_hour: float) -> float:
    return (span[1] - span[0] + 1) * per_hour
