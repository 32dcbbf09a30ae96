"""Statistics on paired values: OLS fit with confidence intervals, errors, EPA precision.

Everything here works on whole numpy arrays at ``result()`` time; the streaming part of the
evaluators only keeps per-period sums. scipy is not a runtime dependency of labctl, so the
Student-t distribution needed for confidence intervals and p-values is computed here from the
regularised incomplete beta function (the tests check it against scipy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_EPS = 1e-15
_TINY = 1e-300


@dataclass(frozen=True, slots=True)
class PairStats:
    """Agreement of a candidate ``y`` with a reference ``x`` over ``n`` paired values.

    A figure that the data cannot give (too few pairs, a constant reference) is None.
    """

    n: int
    slope: float | None = None
    intercept: float | None = None
    slope_stderr: float | None = None
    intercept_stderr: float | None = None
    slope_ci95: tuple[float, float] | None = None
    intercept_ci95: tuple[float, float] | None = None
    r: float | None = None
    r2: float | None = None
    p: float | None = None
    """Two-sided p-value of the hypothesis slope = 0 (as ``scipy.stats.linregress``)."""
    rmse: float | None = None
    nrmse: float | None = None
    """RMSE as a percentage of the reference mean."""
    bias: float | None = None
    """Mean of (candidate − reference)."""
    y_min: float | None = None
    y_max: float | None = None
    y_mean: float | None = None


def pair_stats(x: FloatArray, y: FloatArray) -> PairStats:
    """OLS of ``y`` (candidate) on ``x`` (reference), Pearson R², RMSE, NRMSE and bias.

    The 95 % confidence intervals of slope and intercept use the t-distribution with n − 2
    degrees of freedom; they need at least three pairs.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D arrays of one length, got {x.shape} and {y.shape}")
    n = int(x.size)
    if n == 0:
        return PairStats(n=0)
    diff = y - x
    rmse = math.sqrt(float(np.mean(diff * diff)))
    xm, ym = float(np.mean(x)), float(np.mean(y))
    # NRMSE relative to the reference level; undefined when the reference averages zero.
    nrmse = rmse / xm * 100.0 if xm != 0.0 else None
    base = PairStats(
        n=n,
        rmse=rmse,
        nrmse=nrmse,
        bias=float(np.mean(diff)),
        y_min=float(np.min(y)),
        y_max=float(np.max(y)),
        y_mean=ym,
    )
    if n < 2:
        return base
    # Centred sums: stable even when the values sit far from zero.
    dx, dy = x - xm, y - ym
    sxx, syy, sxy = float(dx @ dx), float(dy @ dy), float(dx @ dy)
    if sxx == 0.0:
        return base
    slope = sxy / sxx
    intercept = ym - slope * xm
    r: float | None = None
    r2: float | None = None
    if syy > 0.0:
        r = max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
        r2 = r * r
    df = n - 2
    if df < 1:
        return replace(base, slope=slope, intercept=intercept, r=r, r2=r2)
    resid = y - (intercept + slope * x)
    sse = float(resid @ resid)
    slope_se = math.sqrt(sse / df / sxx)
    intercept_se = slope_se * math.sqrt(float(x @ x) / n)
    t = t_ppf(0.975, df)
    p: float | None = None
    if r is not None:
        p = _slope_p_value(r, df)
    return replace(
        base,
        slope=slope,
        intercept=intercept,
        slope_stderr=slope_se,
        intercept_stderr=intercept_se,
        slope_ci95=(slope - t * slope_se, slope + t * slope_se),
        intercept_ci95=(intercept - t * intercept_se, intercept + t * intercept_se),
        r=r,
        r2=r2,
        p=p,
    )


def _slope_p_value(r: float, df: int) -> float:
    if abs(r) >= 1.0:
        return 0.0
    t = r * math.sqrt(df / ((1.0 - r) * (1.0 + r)))
    return t_two_sided_p(abs(t), df)


def epa_precision(values: FloatArray) -> tuple[float | None, float | None]:
    """EPA 2021 precision of M collocated units over N periods: ``(SD, CV %)``.

    ``values`` is an N × M array (periods × units) holding only periods where every unit is
    valid. SD = sqrt(Σ_j Σ_d (x_dj − x̄_d)² / (N·M − 1)), x̄_d the mean across units in period d;
    CV = SD / x̄ × 100, x̄ the mean of all values.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] < 2:
        return None, None
    n, m = v.shape
    dev = v - v.mean(axis=1, keepdims=True)
    sd = math.sqrt(float(np.sum(dev * dev)) / (n * m - 1))
    mean = float(v.mean())
    cv = sd / mean * 100.0 if mean != 0.0 else None
    return sd, cv


# --- Student t ------------------------------------------------------------------------------


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| ≥ t) for Student's t with ``df`` degrees of freedom (t ≥ 0)."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if t <= 0.0:
        return 1.0
    if math.isinf(t):
        return 0.0
    # P(|T| ≥ t) = I_{df/(df+t²)}(df/2, 1/2); written to keep precision for large t.
    x = df / (df + t * t)
    return regularized_beta(df / 2.0, 0.5, x)


def t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (0 < q < 1)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"a quantile needs 0 < q < 1, got {q}")
    if q == 0.5:
        return 0.0
    tail = 2.0 * min(q, 1.0 - q)  # the two-sided tail probability we want
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > tail:
        lo, hi = hi, hi * 2.0
        if hi > 1e300:
            break
    # Bisection: the tail is monotone in t; 200 halvings reach the float resolution.
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if t_two_sided_p(mid, df) > tail:
            lo = mid
        else:
            hi = mid
    t = 0.5 * (lo + hi)
    return t if q > 0.5 else -t


def regularized_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) (continued fraction, Lentz)."""
    if a <= 0 or b <= 0:
        raise ValueError("a and b must be positive")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The continued fraction converges fast only below the mean; use the symmetry above it.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


def _beta_cf(a: float, b: float, x: float) -> float:
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")
