"""Exact tests over a handful of seeds, and what such a test can detect.

A claim is one number per seed, and there are about 10 seeds: too few to trust a normal
approximation in the tails (a t-test printed p = 1e-13 on 10 seeds, and p = 0 with a
zero-width interval on constant scores). Under the null of no effect, each seed's paired
difference is as likely to have either sign, so the exact test flips signs: the p value is
the share of the 2^n sign patterns whose mean is at least as far from 0 as the observed
one. It needs no distributional assumption, and its floor is what n seeds can give:
2 / 2^n two-sided (0.002 for 10 seeds).
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
from scipy import optimize
from scipy import stats as sps

ENUMERATE_UP_TO = 16  # seeds; above, 2^16 random sign patterns (fixed generator)
TOLERANCE = 1e-12


def _finite(x) -> np.ndarray:
    x = np.asarray(x, dtype=float).ravel()
    return x[np.isfinite(x)]


@functools.lru_cache(maxsize=32)
def _signs(n: int) -> np.ndarray:
    """(patterns, n) of +-1: every pattern for small n, else a fixed random sample. Built
    once per n (building it was 7.8 of the aggregate stage's 28 s), read-only."""
    if n <= ENUMERATE_UP_TO:
        out = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        out = np.random.default_rng(0).choice((1.0, -1.0), size=(2**ENUMERATE_UP_TO, n))
    out.flags.writeable = False
    return out


def sign_flip_p(x, null: float = 0.0, alternative: str = "two-sided") -> float:
    """The exact sign-flip test of H0: the values `x - null` are symmetric about 0.

    `alternative`: "two-sided", "less" (the mean is below `null`) or "greater". Values
    all equal to `null` give p = 1; fewer than one value, NaN.
    """
    d = _finite(x) - null
    n = d.size
    if n == 0:
        return math.nan
    if not np.any(d):
        return 1.0
    flipped = _signs(n) @ d / n
    obs = d.mean()
    tol = TOLERANCE * max(1.0, float(np.abs(d).max()))
    if alternative == "two-sided":
        hits = np.abs(flipped) >= abs(obs) - tol
    elif alternative == "less":
        hits = flipped <= obs + tol
    elif alternative == "greater":
        hits = flipped >= obs - tol
    else:
        raise ValueError(f"alternative: two-sided, less or greater, not {alternative!r}")
    if n <= ENUMERATE_UP_TO:
        return float(hits.mean())
    return float((hits.sum() + 1) / (hits.size + 1))


def sign_flip_tost_p(x, margin: float) -> float:
    """Equivalence, |mean| < margin, by two one-sided exact tests: the larger p."""
    return max(
        sign_flip_p(x, -margin, "greater"),
        sign_flip_p(x, margin, "less"),
    )


def p_floor(n: int, alternative: str = "two-sided") -> float:
    """The smallest p the exact test can give with n seeds."""
    if n <= 0:
        return 1.0
    return (2.0 if alternative == "two-sided" else 1.0) / 2.0 ** min(n, ENUMERATE_UP_TO)


def format_p(p: float, n: int, alternative: str = "two-sided") -> str:
    """A p value never shown below what n seeds can give: '<= 0.002' at the floor."""
    if not math.isfinite(p):
        return "—"
    floor = p_floor(n, alternative)
    if p <= floor * (1 + 1e-9):
        return f"<= {floor:.2g}"
    return f"{p:.2g}"


def k_agree(x, expect: str, margin: float | None = None) -> int:
    """Seeds whose value agrees with the claim: below 0 ("lower"), above ("higher"), or
    within the margin ("same")."""
    d = _finite(x)
    if expect == "lower":
        return int((d < 0).sum())
    if expect == "higher":
        return int((d > 0).sum())
    return int((np.abs(d) < (margin or 0.0)).sum())


def min_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean a two-sided one-sample t-test at `alpha` detects with the given
    power, for n values of standard deviation sd (noncentral t); inf where n seeds cannot
    reach alpha at all under the exact test's floor, NaN without a spread."""
    if n < 2 or p_floor(n) > alpha:
        return math.inf
    if not (math.isfinite(sd) and sd > 0):
        return math.nan
    df = n - 1
    crit = sps.t.ppf(1 - alpha / 2, df)

    def reach(nc: float) -> float:  # power at noncentrality nc = delta sqrt(n) / sd
        p = sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc)
        return (1.0 if not math.isfinite(p) else p) - power

    # n >= 6 here, where 80% power needs a noncentrality of about 3.5 (df 5) or less
    return float(optimize.brentq(reach, 0.0, 15.0)) * sd / math.sqrt(n)


def order_interval(scores, confidence: float = 0.95) -> tuple[float, float, float]:
    """(net share, low, high) of ternary per-seed scores in {-1, 0, +1}: the mean, with an
    exact (Clopper-Pearson) interval for the share q of +1 among the non-tied seeds,
    mapped to the net share (2q - 1) * (non-tied / n). Constant scores get an honest
    interval (ten -1: about [-1, -0.38]), not a t-interval of zero width."""
    s = _finite(scores)
    n = s.size
    if n == 0:
        return math.nan, math.nan, math.nan
    plus, minus = int((s > 0).sum()), int((s < 0).sum())
    decided = plus + minus
    est = float(s.mean())
    if decided == 0:  # every seed tied: the share that could break either way is bounded
        undecided = sps.binomtest(0, n).proportion_ci(confidence, method="exact").high
        return est, -undecided, undecided
    ci = sps.binomtest(plus, decided).proportion_ci(confidence, method="exact")
    share = decided / n
    return est, (2 * ci.low - 1) * share, (2 * ci.high - 1) * share


def holm_families(p, primary) -> np.ndarray:
    """Holm's correction within the primary claims and, separately, within the rest; a
    NaN p stays NaN and does not count in its family's size."""
    p = np.asarray(p, dtype=float)
    primary = np.asarray(primary, dtype=bool)
    out = np.full(p.shape, np.nan)
    for family in (primary, ~primary):
        idx = np.flatnonzero(family & np.isfinite(p))
        m = idx.size
        if not m:
            continue
        order = idx[np.argsort(p[idx], kind="stable")]
        stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
        out[order] = stepped
    return out
