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


POWER_PATTERNS = 4096  # sign patterns per resample past 12 seeds (p resolved to ~2e-4)


@functools.lru_cache(maxsize=32)
def _power_signs(n: int) -> np.ndarray:
    """Every pattern up to 12 seeds, else a fixed sample of POWER_PATTERNS: a power
    estimate needs p resolved near the level, not the exact tail."""
    if n <= 12:
        return _signs(n)
    out = np.random.default_rng(1).choice((1.0, -1.0), size=(POWER_PATTERNS, n))
    out.flags.writeable = False
    return out


def _one_sided_rows(d: np.ndarray, alternative: str) -> np.ndarray:
    """One-sided sign-flip p ("greater": the mean is above 0) of each row, as
    sign_flip_p_rows does two-sided."""
    n = d.shape[1]
    signs = _power_signs(n)
    flipped = d @ signs.T / n
    obs = d.mean(axis=1, keepdims=True)
    tol = TOLERANCE * np.maximum(1.0, np.abs(d).max(axis=1, keepdims=True))
    hits = flipped >= obs - tol if alternative == "greater" else flipped <= obs + tol
    if n <= 12:
        return hits.mean(axis=1)
    return (hits.sum(axis=1) + 1) / (hits.shape[1] + 1)


def sign_flip_p_rows(d: np.ndarray) -> np.ndarray:
    """`sign_flip_p` (two-sided, null 0) of each row of (samples, n) finite values at once;
    past 12 seeds on a fixed sample of sign patterns (for power, not for reporting)."""
    d = np.atleast_2d(np.asarray(d, dtype=float))
    n = d.shape[1]
    if n == 0:
        return np.full(d.shape[0], np.nan)
    signs = _power_signs(n)
    flipped = d @ signs.T / n  # (samples, patterns)
    obs = np.abs(d.mean(axis=1, keepdims=True))
    tol = TOLERANCE * np.maximum(1.0, np.abs(d).max(axis=1, keepdims=True))
    hits = np.abs(flipped) >= obs - tol
    if n <= 12:
        p = hits.mean(axis=1)
    else:
        p = (hits.sum(axis=1) + 1) / (hits.shape[1] + 1)
    return np.where(np.any(d != 0, axis=1), p, 1.0)


POWER = 0.8
POWER_DRAWS = 200  # draws of the seeds' noise per candidate effect
NOISE_DF = 4  # the noise model's tails (Student t, scaled by the seeds' sd): see below


def _residual_draws(x, draws: int = POWER_DRAWS) -> np.ndarray:
    """(draws, n) samples of the seeds' own noise without their effect: Student t with
    NOISE_DF degrees of freedom, scaled by the per-seed values' standard deviation (a
    fixed generator: the same bytes every run).

    At the levels a family imposes (all 10 seeds must agree) power hangs on the noise's
    tail, which 10 seeds estimate badly. In the calibration (study/calibration.py, on the
    aa_control sweep's replicas), where 80% was printed: resampling the 10 residuals gave
    44-62% power, normal noise of their sd 56-66%, t with 9 degrees of freedom 56-75%
    (trends and interactions, 4 runs to a seed's number, the lowest). t with 4 is chosen
    on that calibration, which reruns with every change of the rules."""
    x = _finite(x)
    rng = np.random.default_rng(12345)
    sd = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    return sd * rng.standard_t(NOISE_DF, size=(draws, x.size))


def power_at(x, effect: float, level: float) -> float:
    """The share of resamples of the seeds' own noise, shifted by `effect`, that the exact
    sign-flip test rejects at `level` (two-sided)."""
    r = _residual_draws(x)
    return float((sign_flip_p_rows(r + effect) <= level * (1 + 1e-9)).mean())


def detectable(x, level: float, power: float = POWER) -> float:
    """The smallest true effect the claim's own test (the exact sign-flip test) detects
    with `power` at `level` (the level the claim faces: alpha over the family's size at
    Holm's first step), simulated on resamples of the seeds' own residuals; inf where n
    seeds cannot reach `level` at all, NaN without a spread.

    The old figure (a t-test at an uncorrected 5%) was about 2x too optimistic for a claim
    that faces alpha/14 with an exact test; this is the one the claim actually needs."""
    x = _finite(x)
    n = x.size
    if n < 2 or p_floor(n) > level:
        return math.inf
    r = _residual_draws(x)
    spread = float(np.abs(r).max())
    if spread == 0:
        return math.nan

    def reach(effect: float) -> float:
        return float((sign_flip_p_rows(r + effect) <= level * (1 + 1e-9)).mean())

    lo, hi = 0.0, spread
    while reach(hi) < power:  # a shift beyond every residual makes all signs agree
        lo, hi = hi, 2 * hi
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if reach(mid) < power else (lo, mid)
        if hi - lo <= 2e-3 * hi:
            break
    return hi


def needed_agreeing(n: int, level: float) -> int | None:
    """How many of n seeds must agree (the others against, all of one size) for the exact
    test to reach `level` two-sided; None where even n of n cannot."""
    for k in range(n // 2 + 1, n + 1):
        if sign_flip_p(np.r_[np.ones(k), -np.ones(n - k)]) <= level * (1 + 1e-9):
            return k
    return None


def equivalence_power(x, margin: float, level: float) -> float:
    """The power of the exact equivalence test (TOST) at `level` if the true effect were 0,
    on resamples of the seeds' own residuals: below 0.8, the margin is narrower than these
    seeds can show."""
    r = _residual_draws(x, 200)
    p = np.maximum(_one_sided_rows(r + margin, "greater"), _one_sided_rows(r - margin, "less"))
    return float((p <= level * (1 + 1e-9)).mean())


def difference_p(x, margin: float) -> float:
    """The exact test that the mean lies outside (-margin, margin), either side: twice the
    smaller one-sided p (the complement of the equivalence test)."""
    return min(
        1.0,
        2 * min(sign_flip_p(x, margin, "greater"), sign_flip_p(x, -margin, "less")),
    )


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


def holm_primary(p, primary) -> np.ndarray:
    """Holm's correction within the primary claims; NaN for the exploratory ones (Holm
    cannot undo choosing claims after seeing the data: their p stays uncorrected, and
    they get no verdict). A NaN p stays NaN and does not count in the family's size."""
    p = np.asarray(p, dtype=float)
    primary = np.asarray(primary, dtype=bool)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(primary & np.isfinite(p))
    m = idx.size
    if m:
        order = idx[np.argsort(p[idx], kind="stable")]
        out[order] = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    return out
