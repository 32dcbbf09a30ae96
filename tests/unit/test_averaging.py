"""The EPA averaging rules: > 75 % of samples per hour, > 75 % of hours per day."""

from __future__ import annotations

import random

import numpy as np
import pytest

from labctl.evaluators.averaging import (
    HourlyAccumulator,
    averaging_hours,
    block_means,
    expected_per_hour,
    hourly_means,
    infer_interval,
    min_valid,
)

DAY0 = 1_564_617_600  # 2019-08-01T00:00:00Z
H = 3600


def test_thresholds_are_more_than_75_percent() -> None:
    assert min_valid(60) == 46
    assert min_valid(24) == 19
    assert min_valid(1) == 1
    assert min_valid(4) == 4  # 3 of 4 is exactly 75 %, not more
    assert min_valid(8) == 7
    assert expected_per_hour(60.0) == 60
    assert expected_per_hour(3600.0) == 1
    assert expected_per_hour(7200.0) == 1  # slower than hourly: each value is its own hour


def _minute_hour(acc: HourlyAccumulator, hour: int, count: int, value: float) -> None:
    for minute in range(count):
        acc.add(DAY0 + hour * H + minute * 60, {"pm25": value})


def test_hour_with_45_of_60_samples_is_dropped_and_46_kept() -> None:
    acc = HourlyAccumulator("pm25")
    _minute_hour(acc, 0, 60, 1.0)
    _minute_hour(acc, 1, 45, 2.0)
    _minute_hour(acc, 2, 46, 3.0)
    table = acc.table()
    interval = infer_interval(table)
    assert interval == 60.0
    hourly = hourly_means(table, expected_per_hour(interval))
    base = DAY0 // H
    assert hourly.starts.tolist() == [base, base + 2]
    assert hourly.values.tolist() == [1.0, 3.0]


def test_hourly_means_are_means_of_the_samples() -> None:
    acc = HourlyAccumulator("pm25")
    values = np.linspace(1.0, 60.0, 60)
    for minute, v in enumerate(values):
        acc.add(DAY0 + minute * 60 + 0.5, {"pm25": float(v)})
    hourly = hourly_means(acc.table(), 60)
    assert hourly.values[0] == pytest.approx(values.mean())


def _day_of_hours(valid_hours: int, day: int = 0) -> HourlyAccumulator:
    acc = HourlyAccumulator("pm25")
    for h in range(valid_hours):
        acc.add(DAY0 + day * 86400 + h * H, {"pm25": float(h)})
    return acc


def test_day_with_18_valid_hours_is_dropped_and_19_kept() -> None:
    for hours, kept in ((18, False), (19, True), (24, True)):
        hourly = hourly_means(_day_of_hours(hours).table(), 1)
        daily = block_means(hourly, 24)
        assert (len(daily) == 1) is kept, hours
        if kept:
            assert daily.starts.tolist() == [DAY0 // H]
            assert daily.values[0] == pytest.approx(np.mean(np.arange(hours)))


def test_daily_means_use_valid_hours_only() -> None:
    """An invalid hour (too few minutes) does not count towards the day or its mean."""
    acc = HourlyAccumulator("pm25")
    for h in range(19):
        _minute_hour(acc, h, 50, 10.0)
    _minute_hour(acc, 19, 45, 1000.0)  # one short of valid: ignored
    table = acc.table()
    daily = block_means(hourly_means(table, 60), 24)
    assert daily.values.tolist() == [10.0]
    short = HourlyAccumulator("pm25")
    for h in range(18):
        _minute_hour(short, h, 60, 10.0)
    _minute_hour(short, 18, 45, 10.0)
    assert len(block_means(hourly_means(short.table(), 60), 24)) == 0


def test_days_are_utc_calendar_days() -> None:
    acc = HourlyAccumulator("pm25")
    # 12:00Z on day 0 to 11:00Z on day 1: 24 hours, but 12 in each calendar day.
    for h in range(12, 36):
        acc.add(DAY0 + h * H, {"pm25": 1.0})
    assert len(block_means(hourly_means(acc.table(), 1), 24)) == 0


def test_out_of_order_input_gives_the_same_averages() -> None:
    samples = []
    rng = np.random.default_rng(5)
    for h in range(72):
        n = int(rng.integers(40, 61))
        for minute in sorted(rng.choice(60, n, replace=False)):
            samples.append((DAY0 + h * H + int(minute) * 60, float(rng.gamma(2, 5))))
    a, b = HourlyAccumulator("pm25", ["rh"]), HourlyAccumulator("pm25", ["rh"])
    for ts, v in samples:
        a.add(ts, {"pm25": v, "rh": 50.0})
    shuffled = samples[:]
    random.Random(3).shuffle(shuffled)
    for ts, v in shuffled:
        b.add(ts, {"pm25": v, "rh": 50.0})
    ta, tb = a.table(), b.table()
    assert infer_interval(ta) == infer_interval(tb) == 60.0
    for k in (1, 24):
        sa = block_means(hourly_means(ta, 60), k)
        sb = block_means(hourly_means(tb, 60), k)
        assert sa.starts.tolist() == sb.starts.tolist()
        np.testing.assert_allclose(sa.values, sb.values, rtol=1e-12)
    assert len(block_means(hourly_means(ta, 60), 1)) < 72  # some hours had < 46 samples


def test_interval_inference() -> None:
    hourly = HourlyAccumulator("pm25")
    for h in [0, 1, 2, 4, 5, 6, 9]:  # hourly data with gaps
        hourly.add(DAY0 + h * H, {"pm25": 1.0})
    assert infer_interval(hourly.table()) == 3600.0
    jitter = HourlyAccumulator("pm25")
    rng = np.random.default_rng(2)
    for i in range(600):
        jitter.add(DAY0 + i * 10 + float(rng.normal(0, 0.2)), {"pm25": 1.0})
    assert infer_interval(jitter.table()) == 10.0
    single = HourlyAccumulator("pm25")
    single.add(DAY0, {"pm25": 1.0})
    assert infer_interval(single.table()) is None


def test_missing_and_nan_values_are_not_samples() -> None:
    acc = HourlyAccumulator("pm25", ["rh"])
    acc.add(DAY0, {"pm25": float("nan"), "rh": 40.0})
    acc.add(DAY0 + 60, {"rh": 60.0})
    acc.add(DAY0 + 120, {"pm25": 5.0})
    table = acc.table()
    assert table.samples == 1
    assert table.condition_means("rh").values.tolist() == [50.0]


def test_other_whole_hour_averagings() -> None:
    acc = HourlyAccumulator("pm25")
    for h in range(24):
        if h not in (1, 2, 9):  # 8-h blocks: 6/8 valid (not > 75 %), 7/8, 8/8
            acc.add(DAY0 + h * H, {"pm25": float(h)})
    blocks = block_means(hourly_means(acc.table(), 1), 8)
    assert blocks.starts.tolist() == [DAY0 // H + 8, DAY0 // H + 16]
    assert averaging_hours(86400) == 24
    assert averaging_hours(8 * H) == 8


@pytest.mark.parametrize(
    ("seconds", "message"),
    [(1800, "at least 1 h"), (60, "at least 1 h"), (5400, "whole number of hours")],
)
def test_averaging_must_be_whole_hours(seconds: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        averaging_hours(seconds)
