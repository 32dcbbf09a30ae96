"""The sensor-accuracy evaluator on generated collocation data."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence

import numpy as np
import pytest
from scipy import stats

from labctl.evaluators.base import EvaluatorFactory, Subject
from labctl.evaluators.breakdown import limitation_text, make_bins
from labctl.evaluators.result import EvaluationResult, Metric, SubjectResult
from labctl.evaluators.sensor_accuracy import KNOWN_CRITERIA, SensorAccuracyEvaluator
from labctl.trial.criteria import Criterion
from labctl.trial.spec import TrialSpec

DAY0 = 1_564_617_600  # 2019-08-01T00:00:00Z
H = 3600.0
REF = Subject("lab/ref", "reference", vendor="lab", device="ref", model="T640")
GOOD = Subject("acme/good", "dut", vendor="acme", device="good", model="A1")
BAD = Subject("nimbus/nb2-0001", "dut", vendor="nimbus", device="nb2-0001", model="NB2")

Sample = tuple[str, float, dict[str, float]]


def _world(days: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hourly timestamps, true PM2.5 and RH spread evenly over 30–100 %."""
    rng = np.random.default_rng(seed)
    n = days * 24
    ts = DAY0 + np.arange(n) * H
    truth = rng.gamma(3.0, 4.0, n) + 3.0
    rh = rng.uniform(30.0, 100.0, n)
    return ts, truth, rh


def _humid_breakdown_samples(days: int = 60, seed: int = 1) -> list[Sample]:
    """Reference, a good candidate and one whose error blows up at RH ≥ 85 %."""
    rng = np.random.default_rng(seed + 100)
    ts, truth, rh = _world(days, seed)
    good = 1.02 * truth + rng.normal(0.0, 0.5, truth.size)
    bad = truth + rng.normal(0.0, 0.5, truth.size)
    humid = rh >= 85.0
    bad[humid] = truth[humid] + rng.normal(0.0, 15.0, int(humid.sum()))
    out: list[Sample] = []
    for i, t in enumerate(ts):
        out.append((REF.key, float(t), {"pm25": float(truth[i]), "rh": float(rh[i])}))
        out.append((GOOD.key, float(t), {"pm25": float(good[i])}))
        out.append((BAD.key, float(t), {"pm25": float(bad[i])}))
    return out


def _run(ev: SensorAccuracyEvaluator, samples: Iterable[Sample]) -> EvaluationResult:
    for key, ts, values in samples:
        ev.add(key, ts, values)
    return ev.result()


def _subject(result: EvaluationResult, key: str) -> SubjectResult:
    return next(s for s in result.subjects if s.subject == key)


def _values(metrics: Sequence[Metric]) -> dict[str, float | None]:
    return {m.name: m.value for m in metrics}


def _spec(**over: object) -> TrialSpec:
    data: dict[str, object] = {
        "trial": "pm25-collocation",
        "title": "PM2.5 sensors against the reference monitor",
        "kind": "sensor-accuracy",
        "devices": {
            "reference": {"role": "reference", "channel": "pm25"},
            "candidates": {"role": "dut", "channel": "pm25", "min": 1},
        },
        "duration": "30d",
        "averaging": "24h",
        "conditions": ["rh"],
        "criteria": {
            "slope": {"between": [0.65, 1.35]},
            "intercept": {"between": [-5, 5]},
            "r2": {"min": 0.70},
            "rmse": {"max": 7},
        },
    }
    data.update(over)
    return TrialSpec.model_validate(data)


def test_is_an_evaluator_factory() -> None:
    factory: type[EvaluatorFactory] = SensorAccuracyEvaluator
    assert factory.name == "sensor-accuracy"
    ev = factory.from_spec(_spec(), [REF, GOOD])
    assert isinstance(ev, SensorAccuracyEvaluator)
    assert ev.channel == "pm25"
    assert ev.averaging_hours == 24


def test_breakdown_names_the_humid_bin_and_the_failing_criteria() -> None:
    ev = SensorAccuracyEvaluator.from_spec(_spec(), [REF, GOOD, BAD])
    result = _run(ev, _humid_breakdown_samples())
    bad = _subject(result, BAD.key)
    [lim] = bad.limitations
    assert lim.condition == "rh"
    assert lim.bin == "RH ≥ 85 %"
    assert {"r2", "rmse"} <= set(lim.criteria)
    assert lim.text.startswith("nimbus/nb2-0001 fails ")
    assert lim.text.endswith(" when RH ≥ 85 %")
    assert "r2 (0." in lim.text
    assert "µg/m³, target ≤ 7)" in lim.text
    labels = [b.label for b in bad.breakdown]
    assert labels == ["RH < 60 %", "60 % ≤ RH < 75 %", "75 % ≤ RH < 85 %", "RH ≥ 85 %"]
    assert [b.failed for b in bad.breakdown[:3]] == [[], [], []]
    assert sum(b.n for b in bad.breakdown) == 60 * 24
    humid = bad.breakdown[3]
    assert humid.lower == 85.0
    assert humid.upper is None
    rmse = humid.metrics["rmse"]
    assert rmse is not None
    assert rmse > 7

    good = _subject(result, GOOD.key)
    assert good.limitations == []
    assert all(b.failed == [] for b in good.breakdown)
    assert good.passed
    assert any("rh bins use the hourly rh of the reference" in n for n in result.notes)


def test_bin_metrics_match_a_direct_computation() -> None:
    samples = _humid_breakdown_samples(days=20, seed=4)
    result = _run(SensorAccuracyEvaluator([REF, GOOD, BAD], conditions=["rh"]), samples)
    ref = {ts: v for key, ts, v in samples if key == REF.key}
    bad = {ts: v["pm25"] for key, ts, v in samples if key == BAD.key}
    x = np.array([ref[t]["pm25"] for t in bad])
    y = np.array(list(bad.values()))
    rh = np.array([ref[t]["rh"] for t in bad])
    m = (rh >= 60) & (rh < 75)
    fit = stats.linregress(x[m], y[m])
    b = _subject(result, BAD.key).breakdown[1]
    assert b.n == int(m.sum())
    assert b.metrics["slope"] == pytest.approx(fit.slope, rel=1e-9)
    assert b.metrics["r2"] == pytest.approx(fit.rvalue**2, rel=1e-9)
    assert b.metrics["rmse"] == pytest.approx(np.sqrt(np.mean((y[m] - x[m]) ** 2)), rel=1e-9)
    assert b.metrics["bias"] == pytest.approx(np.mean(y[m] - x[m]), rel=1e-9)


def test_conditions_come_from_the_candidate_when_the_reference_has_none() -> None:
    ts, truth, rh = _world(40, 3)
    rng = np.random.default_rng(9)
    ev = SensorAccuracyEvaluator([REF, BAD], conditions=["rh"])
    for i, t in enumerate(ts):
        y = truth[i] + (rng.normal(0, 15) if rh[i] >= 85 else rng.normal(0, 0.3))
        ev.add(REF.key, t, {"pm25": float(truth[i])})
        ev.add(BAD.key, t, {"pm25": float(y), "rh": float(rh[i])})
    result = ev.result()
    [lim] = _subject(result, BAD.key).limitations
    assert lim.bin == "RH ≥ 85 %"
    assert any("each candidate" in n for n in result.notes)


def test_a_bin_with_fewer_than_10_pairs_is_reported_but_not_judged() -> None:
    ts, truth, _ = _world(30, 5)
    rng = np.random.default_rng(5)
    rh = np.full(ts.size, 50.0)
    rh[:9] = 95.0  # nine humid hours, and the candidate is awful in them
    ev = SensorAccuracyEvaluator([REF, BAD], conditions=["rh"])
    for i, t in enumerate(ts):
        y = truth[i] + (rng.normal(0, 30) if i < 9 else rng.normal(0, 0.3))
        ev.add(REF.key, t, {"pm25": float(truth[i]), "rh": float(rh[i])})
        ev.add(BAD.key, t, {"pm25": float(y)})
    bad = _subject(ev.result(), BAD.key)
    humid = bad.breakdown[-1]
    assert humid.n == 9
    assert humid.metrics["rmse"] is not None
    assert humid.failed == []
    assert bad.limitations == []


def _independent_daily(hourly: dict[float, float]) -> dict[int, float]:
    """Daily means of hourly values by UTC date, kept with ≥ 19 hours (written separately)."""
    days: dict[int, list[float]] = {}
    for t, v in hourly.items():
        days.setdefault(int(t // 86400), []).append(v)
    return {d: float(np.mean(v)) for d, v in days.items() if len(v) >= 19}


def test_24h_metrics_match_an_independent_computation() -> None:
    ts, truth, _ = _world(45, 8)
    rng = np.random.default_rng(8)
    cand = 0.8 * truth - 1.0 + rng.normal(0, 3, truth.size)
    keep_ref = rng.random(ts.size) > 0.08
    keep_cand = rng.random(ts.size) > 0.12
    ref_h = {float(t): float(v) for t, v, k in zip(ts, truth, keep_ref, strict=True) if k}
    cand_h = {float(t): float(v) for t, v, k in zip(ts, cand, keep_cand, strict=True) if k}
    ev = SensorAccuracyEvaluator(
        [Subject(REF.key, "reference", interval_s=3600), Subject(GOOD.key, "dut", interval_s=3600)]
    )
    for t, v in ref_h.items():
        ev.add(REF.key, t, {"pm25": v})
    for t, v in cand_h.items():
        ev.add(GOOD.key, t, {"pm25": v})
    s = _subject(ev.result(), GOOD.key)

    rd, cd = _independent_daily(ref_h), _independent_daily(cand_h)
    common = sorted(set(rd) & set(cd))
    x = np.array([rd[d] for d in common])
    y = np.array([cd[d] for d in common])
    fit = stats.linregress(x, y)
    got = _values(s.by_averaging["24h"])
    assert got == _values(s.metrics)
    assert got["n"] == len(common)
    assert len(common) < 45  # some days fell below 19 valid hours
    assert got["slope"] == pytest.approx(fit.slope, rel=1e-9)
    assert got["intercept"] == pytest.approx(fit.intercept, rel=1e-9)
    assert got["r2"] == pytest.approx(fit.rvalue**2, rel=1e-9)
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean((y - x) ** 2)), rel=1e-9)
    assert got["nrmse"] == pytest.approx(np.sqrt(np.mean((y - x) ** 2)) / x.mean() * 100)
    assert got["bias"] == pytest.approx(np.mean(y - x), rel=1e-9)
    assert got["sensor_max"] == pytest.approx(y.max())
    assert got["completeness"] == pytest.approx(len(cand_h) / len(ts))
    slope = next(m for m in s.metrics if m.name == "slope")
    t = stats.t.ppf(0.975, len(common) - 2)
    assert slope.ci95 == pytest.approx((fit.slope - t * fit.stderr, fit.slope + t * fit.stderr))
    intercept = next(m for m in s.metrics if m.name == "intercept")
    assert intercept.unit == "µg/m³"
    assert intercept.ci95 is not None
    assert {m.name: m.unit for m in s.metrics}["nrmse"] == "%"

    hourly = _values(s.by_averaging["1h"])
    both = sorted(set(ref_h) & set(cand_h))
    fit_h = stats.linregress([ref_h[t] for t in both], [cand_h[t] for t in both])
    assert hourly["n"] == len(both)
    assert hourly["slope"] == pytest.approx(fit_h.slope, rel=1e-9)


def _minute_samples(days: int, seed: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    n = days * 1440
    ts = DAY0 + np.arange(n) * 60.0
    truth = 8 + 4 * np.sin(np.arange(n) / 700) + rng.gamma(2, 1, n)
    rh = 60 + 30 * np.sin(np.arange(n) / 300)
    out: list[Sample] = []
    for key, gain, drop in ((REF.key, 1.0, 0.0), (GOOD.key, 1.1, 0.1)):
        y = gain * truth + rng.normal(0, 0.5, n)
        keep = rng.random(n) >= drop
        out += [
            (key, float(t), {"pm25": float(v), "rh": float(h)})
            for t, v, h, k in zip(ts, y, rh, keep, strict=True)
            if k
        ]
    return out


def test_interleaved_out_of_order_input_gives_the_same_result() -> None:
    samples = _minute_samples(5, 2)
    in_order = _run(SensorAccuracyEvaluator([REF, GOOD], conditions=["rh"]), samples)
    shuffled = samples[:]
    random.Random(7).shuffle(shuffled)
    mixed = _run(SensorAccuracyEvaluator([REF, GOOD], conditions=["rh"]), shuffled)
    a, b = _subject(in_order, GOOD.key), _subject(mixed, GOOD.key)
    for label in ("1h", "24h"):
        va, vb = _values(a.by_averaging[label]), _values(b.by_averaging[label])
        assert va.keys() == vb.keys()
        for name, value in va.items():
            assert vb[name] == pytest.approx(value, rel=1e-9, abs=1e-12), (label, name)
    assert [x.n for x in a.breakdown] == [x.n for x in b.breakdown]
    assert [c.passed for c in a.criteria] == [c.passed for c in b.criteria]


def test_completeness_of_minute_data_with_gaps() -> None:
    samples = _minute_samples(3, 4)
    result = _run(SensorAccuracyEvaluator([REF, GOOD]), samples)
    got = sum(1 for key, _, _ in samples if key == GOOD.key)
    s = _subject(result, GOOD.key)
    completeness = s.metric("completeness")
    assert completeness is not None
    assert completeness.value == pytest.approx(got / 4320)  # 3 days of 1-minute samples
    valid = _values(s.by_averaging["1h"])["valid_periods"]
    assert valid is not None
    assert 0.9 < valid <= 1.0  # ~90 % of minutes present: most hours keep ≥ 46 of 60


def test_precision_across_units_of_one_model() -> None:
    ts, truth, _ = _world(20, 6)
    rng = np.random.default_rng(6)
    units = [Subject(f"acme/u{i}", "dut", model="A1") for i in range(3)]
    lone = Subject("other/x", "dut", model="X9")
    ev = SensorAccuracyEvaluator([REF, *units, lone])
    series: dict[str, np.ndarray] = {}
    for s in (*units, lone):
        series[s.key] = truth * rng.normal(1.0, 0.05) + rng.normal(0, 1.0, truth.size)
    for i, t in enumerate(ts):
        ev.add(REF.key, t, {"pm25": float(truth[i])})
        for key, y in series.items():
            if key == "acme/u2" and i < 48:
                continue  # u2 misses its first two days: those days are not common to all
            ev.add(key, t, {"pm25": float(y[i])})
    [group] = ev.result().groups
    assert group.group == "A1"
    assert group.members == ["acme/u0", "acme/u1", "acme/u2"]
    daily = np.column_stack([series[u.key].reshape(20, 24).mean(axis=1)[2:] for u in units])
    dev = daily - daily.mean(axis=1, keepdims=True)
    sd = np.sqrt(np.sum(dev**2) / (daily.size - 1))
    got = _values(group.metrics)
    assert got["n"] == 18
    assert got["sd"] == pytest.approx(sd, rel=1e-9)
    assert got["cv"] == pytest.approx(sd / daily.mean() * 100, rel=1e-9)


def test_spec_averaging_of_one_hour_judges_hourly_pairs() -> None:
    ev = SensorAccuracyEvaluator.from_spec(_spec(averaging="1h"), [REF, GOOD, BAD])
    result = _run(ev, _humid_breakdown_samples(days=10))
    s = _subject(result, GOOD.key)
    assert set(s.by_averaging) == {"1h", "24h"}
    assert s.metrics == s.by_averaging["1h"]


def test_other_whole_hour_averaging_is_added() -> None:
    ev = SensorAccuracyEvaluator([REF, GOOD, BAD], averaging_s=8 * H)
    s = _subject(_run(ev, _humid_breakdown_samples(days=4)), GOOD.key)
    assert list(s.by_averaging) == ["1h", "8h", "24h"]
    assert _values(s.metrics)["n"] == 12


def test_criteria_outcomes_and_verdict() -> None:
    strict = {"r2": Criterion(min=0.999), "rmse": Criterion(max=100), "bias": Criterion(max=5)}
    ev = SensorAccuracyEvaluator([REF, GOOD, BAD], criteria=strict)
    s = _subject(_run(ev, _humid_breakdown_samples(days=20)), GOOD.key)
    outcomes = {o.metric: o for o in s.criteria}
    assert not outcomes["r2"].passed
    assert outcomes["r2"].target == "≥ 0.999"
    assert outcomes["rmse"].passed
    assert not s.passed


def test_unknown_metric_in_criteria_is_an_error_in_words() -> None:
    spec = _spec(criteria={"r2": {"min": 0.7}, "r_squared": {"min": 0.7}})
    with pytest.raises(ValueError, match="r_squared") as info:
        SensorAccuracyEvaluator.from_spec(spec, [REF, GOOD])
    for name in KNOWN_CRITERIA:
        assert name in str(info.value)


def test_bad_specs_are_errors_in_words() -> None:
    with pytest.raises(ValueError, match="at least 1 h"):
        SensorAccuracyEvaluator.from_spec(_spec(averaging="30m"), [REF, GOOD])
    mixed = {
        "reference": {"role": "reference", "channel": "pm25"},
        "candidates": {"role": "dut", "channel": "pm10"},
    }
    with pytest.raises(ValueError, match="'pm10'"):
        SensorAccuracyEvaluator.from_spec(_spec(devices=mixed), [REF, GOOD])
    no_ref = {"candidates": {"role": "dut", "channel": "pm25"}}
    with pytest.raises(ValueError, match="role 'reference'"):
        SensorAccuracyEvaluator.from_spec(_spec(devices=no_ref), [GOOD])
    with pytest.raises(ValueError, match="strictly ascending"):
        SensorAccuracyEvaluator.from_spec(_spec(bins={"rh": [80, 60]}), [REF, GOOD])
    with pytest.raises(ValueError, match="exactly one subject with role 'reference'"):
        SensorAccuracyEvaluator([REF, Subject("lab/ref2", "reference"), GOOD])


def test_condition_without_edges_is_skipped_with_a_note() -> None:
    ev = SensorAccuracyEvaluator.from_spec(_spec(conditions=["rh", "pressure"]), [REF, GOOD, BAD])
    result = _run(ev, _humid_breakdown_samples(days=3))
    assert any("'pressure' has no bin edges" in n for n in result.notes)
    assert {b.condition for b in _subject(result, GOOD.key).breakdown} == {"rh"}


def test_unknown_subject_is_refused() -> None:
    ev = SensorAccuracyEvaluator([REF, GOOD])
    with pytest.raises(ValueError, match="ghost"):
        ev.add("ghost", DAY0, {"pm25": 1.0})


def test_no_data_gives_failed_criteria_not_a_crash() -> None:
    result = SensorAccuracyEvaluator([REF, GOOD]).result()
    s = _subject(result, GOOD.key)
    assert not s.passed
    assert _values(s.metrics)["n"] == 0
    assert not result.passed


def test_bin_labels_and_limitation_text() -> None:
    assert [b.label for b in make_bins("temperature", (10, 20, 30))] == [
        "T < 10 °C",
        "10 °C ≤ T < 20 °C",
        "20 °C ≤ T < 30 °C",
        "T ≥ 30 °C",
    ]
    text = limitation_text(
        "nimbus/nb2-0001",
        [("r2", 0.41, "", "≥ 0.7"), ("rmse", 12.3, "µg/m³", "≤ 7")],
        "RH ≥ 85 %",
    )
    assert text == (
        "nimbus/nb2-0001 fails r2 (0.41, target ≥ 0.7) and rmse (12.3 µg/m³, target ≤ 7) "
        "when RH ≥ 85 %"
    )


def test_thirty_days_of_minute_data_for_four_subjects_is_fast() -> None:
    rng = np.random.default_rng(0)
    n = 30 * 1440
    ts = (DAY0 + np.arange(n) * 60.0).tolist()
    truth = rng.gamma(3.0, 4.0, n)
    rh = rng.uniform(30, 100, n).tolist()
    temp = rng.uniform(10, 35, n).tolist()
    subjects = [REF] + [Subject(f"acme/u{i}", "dut", model="A1") for i in range(3)]
    samples = [
        (s.key, t, {"pm25": v, "rh": h, "temperature": c})
        for s in subjects
        for t, v, h, c in zip(ts, (truth + rng.normal(0, 1, n)).tolist(), rh, temp, strict=True)
    ]
    assert len(samples) == 172_800
    ev = SensorAccuracyEvaluator(subjects, conditions=["rh", "temperature"])
    start = time.perf_counter()
    add = ev.add
    for key, t, values in samples:
        add(key, t, values)
    result = ev.result()
    elapsed = time.perf_counter() - start
    assert len(result.subjects) == 3
    assert _values(result.subjects[0].metrics)["n"] == 30
    assert elapsed < 1.0, f"add + result took {elapsed:.2f} s"
