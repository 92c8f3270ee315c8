"""Effect sizes over seeds with 95% confidence intervals and p-values, Holm's correction
over a family of claims, and the verdicts read from the corrected p-values.

Training is chaotic (SPEC, Precision): one run says little, so every comparison here is
between distributions over seeds, and every interval is a Student t-interval (exact for
normal data, deterministic, no resampling to make byte-stable); p-values come from the
same t distribution (scipy), so a 95% interval excludes 0 exactly when p < 0.05.

Conventions:

- An effect is `b - a`: the change from configuration `a` (the baseline) to `b`.
- MSE is compared on the log scale: it spans orders of magnitude (0.1 to 1e4 in one
  sweep), effects on it are multiplicative ("BN halves the error"), and the log of an
  error ratio is far closer to normal than the raw difference, so a t-interval on it is
  honest and one exploded seed does not swamp the mean. `exp(effect) - 1` is the change
  of the geometric mean.
- Runs are paired by seed where they share data order and initialization: with the same
  seed and data set, two runs draw the same batches, and their Linear layers start from
  the same weights (BatchNorm layers draw no random numbers), so pairing removes the
  seed-to-seed spread from the comparison.
- NaN means diverged or missing: such values (pairs, when paired) are dropped and
  counted, never propagated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"
UNDECIDABLE = "cannot be decided with these seeds"  # no effect could reach the level
# An exploratory claim (not fixed before its runs) gets a reading, never a verdict.
CONSISTENT, INCONSISTENT, UNDECIDED = "consistent", "inconsistent", "undecided"
READING = {SUPPORTED: CONSISTENT, NOT_SUPPORTED: INCONSISTENT, INCONCLUSIVE: UNDECIDED}

ALPHA = 0.05  # family-wise error rate of a report's claims (Holm)


@dataclass(frozen=True)
class Effect:
    """A mean difference with its confidence interval."""

    estimate: float
    ci_low: float
    ci_high: float
    n: int  # pairs used (paired) or runs used on both sides (unpaired)
    n_dropped: int  # pairs or values dropped as NaN (diverged, missing)
    paired: bool


def finite(x) -> np.ndarray:
    """The finite values of `x` as a float array."""
    x = np.asarray(x, dtype=float).ravel()
    return x[np.isfinite(x)]


def log_mse(x) -> np.ndarray:
    """Natural log of MSE values; non-positive or non-finite values become NaN."""
    x = np.asarray(x, dtype=float)
    out = np.full(x.shape, np.nan)
    ok = np.isfinite(x) & (x > 0)
    out[ok] = np.log(x[ok])
    return out


def t_interval(x, confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """(mean, ci_low, ci_high, n) of the finite values of `x`.

    n < 2 gives a NaN interval; identical values give a zero-width one.
    """
    x = finite(x)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(np.mean(x))
    if n == 1:
        return mean, math.nan, math.nan, 1
    se = float(np.std(x, ddof=1)) / math.sqrt(n)
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * se
    return mean, mean - half, mean + half, n


def paired_effect(a, b, confidence: float = CONFIDENCE) -> Effect:
    """Mean of the per-pair differences `b[i] - a[i]` with a paired t-interval."""
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} and {b.size}")
    d = b - a
    ok = np.isfinite(d)
    est, lo, hi, n = t_interval(d[ok], confidence)
    return Effect(est, lo, hi, n, int((~ok).sum()), paired=True)


def unpaired_effect(a, b, confidence: float = CONFIDENCE) -> Effect:
    """Difference of means `mean(b) - mean(a)` with a Welch t-interval."""
    a_all, b_all = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    a, b = finite(a_all), finite(b_all)
    dropped = (a_all.size - a.size) + (b_all.size - b.size)
    n = a.size + b.size
    if a.size == 0 or b.size == 0:
        return Effect(math.nan, math.nan, math.nan, n, dropped, paired=False)
    est = float(b.mean() - a.mean())
    if a.size < 2 or b.size < 2:
        return Effect(est, math.nan, math.nan, n, dropped, paired=False)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        return Effect(est, est, est, n, dropped, paired=False)
    # Welch-Satterthwaite degrees of freedom
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(sps.t.ppf(0.5 + confidence / 2, df)) * se
    return Effect(est, est - half, est + half, n, dropped, paired=False)


@dataclass(frozen=True)
class Test:
    """A mean over seeds: estimate, 95% t-interval, p-value and the number of seeds."""

    estimate: float
    ci_low: float
    ci_high: float
    p: float
    n: int


def one_sample(x, margin: float | None = None, confidence: float = CONFIDENCE) -> Test:
    """Mean of the finite values of `x` (one per seed) with a Student-t interval and p-value.

    Without `margin`, p is two-sided for H0: mean = 0. With `margin` (> 0), p is the
    equivalence test's (TOST: the larger of the one-sided p-values of H0: mean <= -margin
    and H0: mean >= margin), small when the mean lies within (-margin, margin).
    Degenerate samples give answers, not NaN: values that are all equal have a zero-width
    interval and p = 1 (all zero: no difference) or p = 0 (any other constant); fewer than
    2 values have no interval and p = 1.
    """
    x = finite(x)
    n = x.size
    if n < 2:
        est = float(x[0]) if n else math.nan
        return Test(est, math.nan, math.nan, 1.0, n)
    mean = float(np.mean(x))
    if np.ptp(x) == 0:
        if margin is not None:
            return Test(mean, mean, mean, 0.0 if abs(mean) < margin else 1.0, n)
        return Test(mean, mean, mean, 1.0 if mean == 0 else 0.0, n)
    res = sps.ttest_1samp(x, 0.0)
    ci = res.confidence_interval(confidence)
    p = float(res.pvalue)
    if margin is not None:
        p_low = sps.ttest_1samp(x, -margin, alternative="greater").pvalue
        p_high = sps.ttest_1samp(x, margin, alternative="less").pvalue
        p = float(max(p_low, p_high))
    return Test(mean, float(ci.low), float(ci.high), p, n)


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN counts as 1): reject where adjusted < alpha,
    controlling the family-wise error rate at alpha over the whole family."""
    p = np.where(np.isfinite(np.asarray(p, dtype=float)), np.asarray(p, dtype=float), 1.0)
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = stepped
    return out


def verdict(
    expect: str, t: Test, p: float, equivalent: bool | None = None, alpha: float = ALPHA
) -> str:
    """A claim's verdict from its p value (Holm-corrected in its family), one rule for both
    ways: `p` < alpha decides, the direction says which way.

    "lower" / "higher": supported when the estimate has that sign, not supported when it
    has the other. "same": `equivalent` says which of the two exact tests `p` is (the
    equivalence test, or the test that the effect lies outside the margin): supported or
    not supported accordingly. Inconclusive otherwise.
    """
    if not p < alpha:
        return INCONCLUSIVE
    if expect == "same":
        return SUPPORTED if equivalent else NOT_SUPPORTED
    if expect not in ("lower", "higher"):
        raise ValueError(f"expect must be lower, higher or same, not {expect!r}")
    if not math.isfinite(t.estimate) or t.estimate == 0:
        return INCONCLUSIVE
    return SUPPORTED if (t.estimate < 0) == (expect == "lower") else NOT_SUPPORTED


def slopes(x, y) -> np.ndarray:
    """Least-squares slope of each row of `y` (units, points) against `x` (points,).

    NaN points are left out of their row's fit; a row with under 2 points gives NaN.
    Per-seed slopes turn "the effect grows with x" into one number per seed, so a
    t-interval over seeds tests it.
    """
    x = np.asarray(x, dtype=float)
    y = np.atleast_2d(np.asarray(y, dtype=float))
    out = np.full(y.shape[0], np.nan)
    for i, row in enumerate(y):
        ok = np.isfinite(row)
        if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
            xc = x[ok] - x[ok].mean()
            out[i] = float(xc @ (row[ok] - row[ok].mean()) / (xc @ xc))
    return out


def quantile(x, q: float) -> float:
    """Quantile of the finite values (NaN when none), without NumPy's all-NaN warning."""
    x = finite(x)
    return float(np.quantile(x, q)) if x.size else math.nan


def column_quantiles(m, qs) -> np.ndarray:
    """Quantiles `qs` of the finite values of each column of `m` (rows, cols): (len(qs), cols).

    A column without finite values gives NaN, without NumPy's all-NaN warning.
    """
    m = np.asarray(m, dtype=float).reshape(np.shape(m)[0], -1)
    m = np.where(np.isfinite(m), m, np.nan)
    out = np.full((len(qs), m.shape[1]), np.nan)
    finite = np.isfinite(m)
    whole = finite.all(axis=0)  # no NaN: numpy's vectorized quantile (nanquantile loops)
    if whole.any():
        out[:, whole] = np.quantile(m[:, whole], qs, axis=0)
    some = finite.any(axis=0) & ~whole
    if some.any():
        out[:, some] = np.nanquantile(m[:, some], qs, axis=0)
    return out


def column_t_intervals(m, confidence: float = CONFIDENCE) -> np.ndarray:
    """Mean and t-interval of the finite values of each column: (3, cols) as t_interval."""
    m = np.asarray(m, dtype=float).reshape(np.shape(m)[0], -1)
    ok = np.isfinite(m)
    n = ok.sum(axis=0)
    x = np.where(ok, m, 0.0)
    mean = np.full(m.shape[1], np.nan)
    np.divide(x.sum(axis=0), n, out=mean, where=n > 0)
    dev = np.where(ok, m - mean, 0.0)
    lo = np.full(m.shape[1], np.nan)
    hi = np.full(m.shape[1], np.nan)
    two = n >= 2
    if two.any():
        sd = np.sqrt((dev[:, two] ** 2).sum(axis=0) / (n[two] - 1))
        half = sps.t.ppf(0.5 + confidence / 2, n[two] - 1) * sd / np.sqrt(n[two])
        lo[two], hi[two] = mean[two] - half, mean[two] + half
    return np.vstack([mean, lo, hi])


def describe(x, confidence: float = CONFIDENCE) -> dict[str, float]:
    """Mean, median and geometric mean with its t-interval (log scale) of positive values.

    The interval is for the geometric mean, the scale on which MSE is compared here.
    """
    x = finite(x)
    logs = finite(log_mse(x))
    g, glo, ghi, _ = t_interval(logs, confidence)
    return {
        "n": int(x.size),
        "mean": float(x.mean()) if x.size else math.nan,
        "median": quantile(x, 0.5),
        "geomean": math.exp(g) if math.isfinite(g) else math.nan,
        "ci_low": math.exp(glo) if math.isfinite(glo) else math.nan,
        "ci_high": math.exp(ghi) if math.isfinite(ghi) else math.nan,
    }


def round_sig(x: float, digits: int = 6) -> float | None:
    """Round to `digits` significant digits; NaN and infinities become None (JSON null)."""
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")
