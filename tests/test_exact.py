"""The exact tests against brute force, scipy and simulation (study/exact.py)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from bnmodels.study import exact


def _brute(x, alternative="two-sided"):
    x = np.asarray(x, dtype=float)
    means = [np.mean(np.array(s) * x) for s in itertools.product((1, -1), repeat=len(x))]
    obs = x.mean()
    if alternative == "two-sided":
        return np.mean([abs(m) >= abs(obs) - 1e-12 for m in means])
    if alternative == "less":
        return np.mean([m <= obs + 1e-12 for m in means])
    return np.mean([m >= obs - 1e-12 for m in means])


@pytest.mark.parametrize("alternative", ["two-sided", "less", "greater"])
def test_the_sign_flip_p_equals_an_enumeration(alternative):
    rng = np.random.default_rng(0)
    for n in (3, 6, 10):
        x = rng.normal(0.3, 1.0, n)
        assert exact.sign_flip_p(x, alternative=alternative) == pytest.approx(
            _brute(x, alternative), abs=1e-12
        )


def test_the_floor_is_what_n_seeds_can_give():
    x = np.full(10, -0.7)
    assert exact.sign_flip_p(x) == pytest.approx(2 / 2**10) == exact.p_floor(10)
    assert exact.sign_flip_p(x, alternative="less") == pytest.approx(1 / 2**10)
    assert exact.sign_flip_p(np.zeros(10)) == 1.0
    assert exact.format_p(exact.sign_flip_p(x), 10) == "<= 0.002"
    assert exact.format_p(0.0342, 10) == "0.034"


def test_ternary_scores_get_the_sign_test():
    s = np.array([-1, -1, -1, 0, -1, 1, -1, -1, 0, -1], dtype=float)
    want = sps.binomtest(1, 8).pvalue  # ties carry no sign
    assert exact.sign_flip_p(s) == pytest.approx(want, rel=1e-12)


def test_equivalence_by_two_one_sided_exact_tests():
    # identical arms: every difference 0 lies within any margin; the p is the floor
    assert exact.sign_flip_tost_p(np.zeros(10), 0.2) == pytest.approx(1 / 2**10)
    rng = np.random.default_rng(1)
    x = rng.normal(0.05, 0.1, 10)
    want = max(_brute(x + 0.2, "greater"), _brute(x - 0.2, "less"))
    assert exact.sign_flip_tost_p(x, 0.2) == pytest.approx(want, abs=1e-12)


def test_k_agree_counts_the_seeds_on_the_claims_side():
    x = np.array([-0.3, 0.1, -0.2, np.nan, 0.05])
    assert exact.k_agree(x, "lower") == 2 and exact.k_agree(x, "higher") == 2
    assert exact.k_agree(x, "same", 0.15) == 2


def test_the_detectable_effect_is_the_claims_own_test_at_its_holm_level():
    x = np.random.default_rng(2).normal(0.0, 0.4, 10)
    sd = x.std(ddof=1)
    level = 0.05 / 14  # Holm's first step in a family of 14
    # by hand: at 0.05/14 ten seeds reach the level only when all ten agree, so under
    # the noise model (t with NOISE_DF degrees of freedom, scaled by the sd) the power at
    # d is F(d / sd)^10 (the other sign: ~0)
    mde = exact.detectable(x, level)
    assert mde == pytest.approx(sd * sps.t.ppf(0.8**0.1, exact.NOISE_DF), rel=0.08)
    assert exact.power_at(x, mde, level) >= 0.8 > exact.power_at(x, 0.9 * mde, level)
    # a t-test at an uncorrected 5% (the old column) promised about half of it
    t_mde = 2.8 * sd / math.sqrt(10)
    assert mde > 1.8 * t_mde
    assert exact.detectable(x[:5], 0.05) == math.inf  # 5 seeds cannot reach 0.05
    assert exact.needed_agreeing(10, level) == 10 and exact.needed_agreeing(10, 0.05) == 9
    assert exact.needed_agreeing(5, 0.05) is None


def test_constant_ternary_scores_get_an_honest_interval():
    est, lo, hi = exact.order_interval(np.full(10, -1.0))
    ci = sps.binomtest(0, 10).proportion_ci(0.95, method="exact")
    assert (est, lo, hi) == pytest.approx((-1.0, -1.0, 2 * ci.high - 1))
    assert hi == pytest.approx(-0.38, abs=0.01)


def test_holm_runs_within_the_primary_family_only():
    p = np.array([0.01, 0.02, 0.04, np.nan, 0.003])
    primary = np.array([True, True, False, False, False])
    got = exact.holm_primary(p, primary)
    # by hand: primary {0.01, 0.02} -> 0.02, 0.02; exploratory claims are not corrected
    assert got[[0, 1]] == pytest.approx([0.02, 0.02])
    assert np.isnan(got[2:]).all()


def test_all_tied_scores_get_an_interval_not_a_point():
    est, lo, hi = exact.order_interval(np.zeros(10))
    bound = sps.binomtest(0, 10).proportion_ci(0.95, method="exact").high
    assert (est, lo, hi) == pytest.approx((0.0, -bound, bound)) and hi > 0.25
