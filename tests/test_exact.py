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


def test_the_detectable_effect_has_its_power_in_a_simulation():
    rng = np.random.default_rng(2)
    n, sd = 10, 0.4
    mde = exact.min_detectable_effect(sd, n)
    x = rng.normal(mde, sd, size=(4000, n))
    power = (sps.ttest_1samp(x, 0.0, axis=1).pvalue < 0.05).mean()
    assert power == pytest.approx(0.8, abs=0.03)
    assert exact.min_detectable_effect(sd, 5) == math.inf  # 5 seeds cannot reach 0.05


def test_constant_ternary_scores_get_an_honest_interval():
    est, lo, hi = exact.order_interval(np.full(10, -1.0))
    ci = sps.binomtest(0, 10).proportion_ci(0.95, method="exact")
    assert (est, lo, hi) == pytest.approx((-1.0, -1.0, 2 * ci.high - 1))
    assert hi == pytest.approx(-0.38, abs=0.01)


def test_holm_runs_within_each_family():
    p = np.array([0.01, 0.02, 0.04, np.nan, 0.003])
    primary = np.array([True, True, False, False, False])
    got = exact.holm_families(p, primary)
    # by hand: primary {0.01, 0.02} -> 0.02, 0.02; exploratory {0.04, 0.003} -> 0.04, 0.006
    assert got[[0, 1, 2, 4]] == pytest.approx([0.02, 0.02, 0.04, 0.006])
    assert math.isnan(got[3])


def test_all_tied_scores_get_an_interval_not_a_point():
    est, lo, hi = exact.order_interval(np.zeros(10))
    bound = sps.binomtest(0, 10).proportion_ci(0.95, method="exact").high
    assert (est, lo, hi) == pytest.approx((0.0, -bound, bound)) and hi > 0.25
