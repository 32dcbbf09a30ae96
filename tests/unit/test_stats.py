"""Pair statistics against independent references (scipy, plain numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from labctl.evaluators.stats import (
    epa_precision,
    pair_stats,
    regularized_beta,
    t_ppf,
    t_two_sided_p,
)

CASES = [(seed, n) for seed in (1, 2, 3) for n in (3, 10, 50, 720)]


def _data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 5.0, n)  # PM2.5-like: positive, skewed
    y = 0.8 * x - 1.5 + rng.normal(0.0, 2.0, n)
    return x, y


@pytest.mark.parametrize(("seed", "n"), CASES)
def test_ols_matches_scipy_linregress(seed: int, n: int) -> None:
    x, y = _data(seed, n)
    ours = pair_stats(x, y)
    ref = stats.linregress(x, y)
    assert ours.n == n
    assert ours.slope == pytest.approx(ref.slope, rel=1e-10, abs=1e-12)
    assert ours.intercept == pytest.approx(ref.intercept, rel=1e-10, abs=1e-12)
    assert ours.r == pytest.approx(ref.rvalue, rel=1e-10, abs=1e-12)
    assert ours.r2 == pytest.approx(ref.rvalue**2, rel=1e-10, abs=1e-12)
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-300)
    assert ours.slope_stderr == pytest.approx(ref.stderr, rel=1e-9)
    assert ours.intercept_stderr == pytest.approx(ref.intercept_stderr, rel=1e-9)


@pytest.mark.parametrize(("seed", "n"), CASES)
def test_confidence_intervals_match_t_times_stderr(seed: int, n: int) -> None:
    x, y = _data(seed, n)
    ours = pair_stats(x, y)
    ref = stats.linregress(x, y)
    t = stats.t.ppf(0.975, n - 2)
    assert ours.slope_ci95 is not None
    assert ours.intercept_ci95 is not None
    assert ours.slope_ci95 == pytest.approx(
        (ref.slope - t * ref.stderr, ref.slope + t * ref.stderr), rel=1e-9
    )
    assert ours.intercept_ci95 == pytest.approx(
        (ref.intercept - t * ref.intercept_stderr, ref.intercept + t * ref.intercept_stderr),
        rel=1e-9,
    )


@pytest.mark.parametrize(("seed", "n"), CASES)
def test_errors_match_numpy(seed: int, n: int) -> None:
    x, y = _data(seed, n)
    ours = pair_stats(x, y)
    rmse = float(np.sqrt(np.mean((y - x) ** 2)))
    assert ours.rmse == pytest.approx(rmse, rel=1e-12)
    assert ours.nrmse == pytest.approx(rmse / np.mean(x) * 100.0, rel=1e-12)
    assert ours.bias == pytest.approx(float(np.mean(y - x)), rel=1e-12, abs=1e-12)
    assert ours.y_min == float(np.min(y))
    assert ours.y_max == float(np.max(y))
    assert ours.y_mean == pytest.approx(float(np.mean(y)), rel=1e-12)


def test_ols_is_stable_far_from_zero() -> None:
    x, y = _data(7, 200)
    far = pair_stats(x + 1e6, y + 1e6)
    ref = stats.linregress(x + 1e6, y + 1e6)
    assert far.slope == pytest.approx(ref.slope, rel=1e-7)
    assert far.r2 == pytest.approx(ref.rvalue**2, rel=1e-7)


def test_too_few_pairs_give_none_not_garbage() -> None:
    empty = pair_stats(np.array([]), np.array([]))
    assert empty.n == 0
    assert empty.slope is None
    assert empty.rmse is None
    one = pair_stats(np.array([3.0]), np.array([4.0]))
    assert one.rmse == 1.0
    assert one.bias == 1.0
    assert one.slope is None
    two = pair_stats(np.array([1.0, 2.0]), np.array([1.0, 3.0]))
    assert two.slope == pytest.approx(2.0)
    assert two.intercept == pytest.approx(-1.0)
    assert two.slope_ci95 is None  # no degrees of freedom left
    flat = pair_stats(np.full(5, 2.0), np.arange(5.0))
    assert flat.slope is None  # a constant reference cannot calibrate anything
    assert flat.r2 is None
    zero_mean = pair_stats(np.array([-1.0, 1.0, 0.0]), np.array([-1.0, 1.0, 0.5]))
    assert zero_mean.nrmse is None


def test_mismatched_arrays_are_rejected() -> None:
    with pytest.raises(ValueError, match="1-D arrays of one length"):
        pair_stats(np.arange(3.0), np.arange(4.0))


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 7, 10, 28, 30, 100, 733, 5000, 100_000])
@pytest.mark.parametrize("q", [0.5, 0.6, 0.9, 0.975, 0.995, 0.025, 1e-6])
def test_t_quantile_matches_scipy(df: int, q: float) -> None:
    assert t_ppf(q, df) == pytest.approx(stats.t.ppf(q, df), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("df", [1, 2, 5, 28, 733, 1e4, 2.5])
@pytest.mark.parametrize("t", [0.0, 0.1, 1.0, 2.05, 5.0, 40.0])
def test_t_two_sided_p_matches_scipy(df: float, t: float) -> None:
    expected = 2.0 * stats.t.sf(t, df)
    assert t_two_sided_p(t, df) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_regularized_beta_matches_scipy() -> None:
    rng = np.random.default_rng(11)
    triples = zip(
        rng.uniform(0.1, 400, 200), rng.uniform(0.1, 50, 200), rng.random(200), strict=True
    )
    for a, b, x in triples:
        assert regularized_beta(a, b, x) == pytest.approx(
            special.betainc(a, b, x), rel=1e-9, abs=1e-14
        )


def test_t_quantile_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="0 < q < 1"):
        t_ppf(1.0, 5)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_two_sided_p(1.0, 0)


def _precision_by_the_book(v: np.ndarray) -> tuple[float, float]:
    """EPA 2021 appendix formula, written out with loops."""
    n, m = v.shape
    total = 0.0
    for d in range(n):
        mean_d = sum(v[d, j] for j in range(m)) / m
        for j in range(m):
            total += (v[d, j] - mean_d) ** 2
    sd = math.sqrt(total / (n * m - 1))
    grand = sum(v[d, j] for d in range(n) for j in range(m)) / (n * m)
    return sd, sd / grand * 100.0


@pytest.mark.parametrize(("seed", "n", "m"), [(1, 30, 3), (2, 5, 2), (3, 60, 7)])
def test_precision_matches_epa_formula(seed: int, n: int, m: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.gamma(2.0, 5.0, n)[:, None]
    v = truth * rng.normal(1.0, 0.1, (n, m)) + rng.normal(0.0, 0.5, (n, m))
    sd, cv = epa_precision(v)
    ref_sd, ref_cv = _precision_by_the_book(v)
    assert sd == pytest.approx(ref_sd, rel=1e-12)
    assert cv == pytest.approx(ref_cv, rel=1e-12)


def test_precision_needs_two_units_and_a_period() -> None:
    assert epa_precision(np.zeros((0, 3))) == (None, None)
    assert epa_precision(np.ones((4, 1))) == (None, None)
