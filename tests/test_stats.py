"""Effect sizes, intervals and verdicts on synthetic data with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bnmodels.study import exact, stats

N_SEEDS = 10


def rng(seed=0):
    return np.random.default_rng(seed)


# --- tests and verdicts from planted effects --------------------------------------------


def judged(x, expect, margin=None):
    """The verdict of a lone claim (a family of one: Holm changes nothing). For `same`, the
    smaller of the exact equivalence and difference tests' p decides, either way."""
    t = stats.one_sample(x, margin)
    if expect != "same":
        return stats.verdict(expect, t, t.p)
    within, outside = exact.sign_flip_tost_p(x, margin), exact.difference_p(x, margin)
    return stats.verdict(expect, t, min(within, outside), within <= outside)


def test_a_real_paired_effect_is_supported():
    a = rng(1).normal(5, 1, N_SEEDS)
    b = a - 1.0 + rng(2).normal(0, 0.1, N_SEEDS)  # b lowers the metric by 1
    t = stats.one_sample(b - a)
    assert t.ci_high < 0 and t.estimate == pytest.approx(-1.0, abs=0.15) and t.p < 1e-6
    assert judged(b - a, "lower") == stats.SUPPORTED
    assert judged(b - a, "higher") == stats.NOT_SUPPORTED


def test_an_absent_effect_is_inconclusive():
    d = np.array([-1.0, 1.0, -0.5, 0.5, -0.2, 0.2, -2.0, 2.0, -0.1, 0.1])  # mean exactly 0
    t = stats.one_sample(d)
    assert t.ci_low < 0 < t.ci_high and t.p == pytest.approx(1.0)
    assert judged(d, "lower") == stats.INCONCLUSIVE
    assert judged(d, "higher") == stats.INCONCLUSIVE


def test_one_sample_matches_scipy_and_a_hand_computed_interval():
    x = rng(12).normal(0.3, 1.0, N_SEEDS)
    t = stats.one_sample(x)
    ref = sps.ttest_1samp(x, 0.0)
    assert t.p == pytest.approx(ref.pvalue, rel=1e-12)
    half = sps.t.ppf(0.975, N_SEEDS - 1) * x.std(ddof=1) / math.sqrt(N_SEEDS)
    assert (t.ci_low, t.ci_high) == pytest.approx((x.mean() - half, x.mean() + half), rel=1e-12)
    assert t.n == N_SEEDS and t.estimate == pytest.approx(x.mean())


def test_equivalence_p_is_the_larger_one_sided_p_against_each_margin():
    x = rng(13).normal(0.05, 0.1, N_SEEDS)
    m = 0.2
    se = x.std(ddof=1) / math.sqrt(N_SEEDS)
    p_low = sps.t.sf((x.mean() + m) / se, N_SEEDS - 1)  # H0: mean <= -m
    p_high = sps.t.cdf((x.mean() - m) / se, N_SEEDS - 1)  # H0: mean >= m
    assert stats.one_sample(x, m).p == pytest.approx(max(p_low, p_high), rel=1e-9)
    assert judged(x, "same", m) == stats.SUPPORTED
    assert judged(x + 1.0, "same", m) == stats.NOT_SUPPORTED  # every seed far above m
    # one rule both ways: a difference outside the margin needs the same p as equivalence
    assert judged(rng(15).normal(0.25, 0.3, N_SEEDS), "same", m) == stats.INCONCLUSIVE
    assert judged(rng(14).normal(0.2, 0.3, N_SEEDS), "same", m) == stats.INCONCLUSIVE


def test_identical_arms_are_no_difference_not_nan():
    zeros = np.zeros(N_SEEDS)  # bit-identical arms: every per-seed difference is 0
    t = stats.one_sample(zeros)
    assert (t.estimate, t.ci_low, t.ci_high, t.p) == (0.0, 0.0, 0.0, 1.0)
    assert judged(zeros, "lower") == stats.INCONCLUSIVE
    assert judged(zeros, "same", 0.1) == stats.SUPPORTED
    const = np.full(N_SEEDS, -0.5)  # the same nonzero difference in every seed
    assert stats.one_sample(const).p == 0.0 and judged(const, "lower") == stats.SUPPORTED
    assert stats.one_sample([0.3]).p == 1.0 and math.isnan(stats.one_sample([]).estimate)


def test_holm_matches_a_hand_computed_example():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> 0.06
    # (adjusted p-values never decrease along the order); NaN counts as p = 1.
    got = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert got == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, math.nan]) == pytest.approx([1.0, 1.0])
    assert stats.holm([0.2]) == pytest.approx([0.2])


def test_verdict_reads_the_corrected_p():
    t = stats.Test(-0.5, -0.9, -0.1, 0.02, N_SEEDS)
    assert stats.verdict("lower", t, 0.02) == stats.SUPPORTED
    assert stats.verdict("lower", t, 0.08) == stats.INCONCLUSIVE  # corrected away
    assert stats.verdict("higher", t, 0.02) == stats.NOT_SUPPORTED
    with pytest.raises(ValueError):
        stats.verdict("bigger", t, 0.02)


# --- paired against unpaired ------------------------------------------------------------


def test_pairing_removes_the_seed_to_seed_spread():
    # A large per-seed offset shared by both configurations (same init and batches) hides
    # a small effect from an unpaired comparison but not from a paired one.
    seed_offset = rng(6).normal(0, 5, N_SEEDS)
    a = seed_offset + rng(7).normal(0, 0.05, N_SEEDS)
    b = seed_offset + 0.5 + rng(8).normal(0, 0.05, N_SEEDS)
    paired, unpaired = stats.paired_effect(a, b), stats.unpaired_effect(a, b)
    assert paired.estimate == pytest.approx(unpaired.estimate)
    assert paired.ci_low > 0 and unpaired.ci_low < 0 < unpaired.ci_high
    assert paired.ci_high - paired.ci_low < (unpaired.ci_high - unpaired.ci_low) / 10


def test_intervals_match_scipy_reference():
    a, b = rng(9).normal(0, 1, 8), rng(10).normal(1, 2, 12)
    ref = sps.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    e = stats.unpaired_effect(a, b)
    assert (e.ci_low, e.ci_high) == pytest.approx((ref.low, ref.high), rel=1e-10)
    assert not e.paired and e.n == 20
    c = a + rng(11).normal(0.3, 0.5, 8)
    ref = sps.ttest_rel(c, a).confidence_interval(0.95)
    e = stats.paired_effect(a, c)
    assert (e.ci_low, e.ci_high) == pytest.approx((ref.low, ref.high), rel=1e-10)


@pytest.mark.parametrize("paired", [True, False])
def test_interval_coverage_is_about_95_percent(paired):
    g = rng(12)
    hits = 0
    for _ in range(200):
        a = g.normal(1.0, 2.0, N_SEEDS)
        b = (a if paired else g.normal(1.0, 2.0, N_SEEDS)) + 0.7 + g.normal(0, 1.0, N_SEEDS)
        e = stats.paired_effect(a, b) if paired else stats.unpaired_effect(a, b)
        hits += e.ci_low <= 0.7 <= e.ci_high
    assert 0.90 <= hits / 200 <= 0.99


# --- NaN (diverged runs) and degenerate samples --------------------------------------------


def test_diverged_pairs_are_dropped_and_counted():
    a = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    b = np.array([2.0, 3.0, 3.0, np.inf, 6.0])
    e = stats.paired_effect(a, b)
    assert (e.n, e.n_dropped) == (3, 2)
    assert e.estimate == 1.0 and (e.ci_low, e.ci_high) == (1.0, 1.0)
    u = stats.unpaired_effect(a, b)
    assert (u.n, u.n_dropped) == (8, 2) and math.isfinite(u.ci_low)


def test_too_few_values_give_no_interval_and_no_verdict():
    assert math.isnan(stats.paired_effect([1.0], [2.0]).ci_low)
    e = stats.paired_effect([np.nan, 1.0], [1.0, np.nan])
    assert e.n == 0 and math.isnan(e.estimate)
    assert (
        judged([], "higher") == stats.INCONCLUSIVE and judged([1.0], "higher") == stats.INCONCLUSIVE
    )
    assert math.isnan(stats.unpaired_effect([np.nan], [1.0, 2.0]).estimate)
    with pytest.raises(ValueError):
        stats.paired_effect([1.0, 2.0], [1.0])


def test_log_mse_turns_nonpositive_and_missing_into_nan():
    out = stats.log_mse([math.e, 0.0, -1.0, np.nan, np.inf])
    assert out[0] == pytest.approx(1.0) and np.isnan(out[1:]).all()


def test_describe_gives_geometric_mean_and_its_interval():
    d = stats.describe([1.0, 100.0, np.nan])
    assert d["n"] == 2 and d["geomean"] == pytest.approx(10.0)
    assert d["median"] == pytest.approx(50.5) and d["ci_low"] < 10.0 < d["ci_high"]
    empty = stats.describe([np.nan])
    assert empty["n"] == 0 and math.isnan(empty["geomean"])


# --- convergence and trends ---------------------------------------------------------------


def test_slopes_recover_a_known_trend_and_skip_nan():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.vstack([2.0 * x + 1, -0.5 * x, [1.0, np.nan, 3.0, np.nan], [np.nan] * 4])
    got = stats.slopes(x, y)
    assert got[:3] == pytest.approx([2.0, -0.5, 1.0]) and np.isnan(got[3])


def test_column_summaries_match_per_column_reference():
    m = rng(13).normal(0, 1, (7, 5))
    m[:, 2] = np.nan
    m[0, 0] = np.nan
    q = stats.column_quantiles(m, [0.5, 0.25])
    assert q[0, 0] == pytest.approx(np.quantile(m[1:, 0], 0.5)) and np.isnan(q[:, 2]).all()
    t = stats.column_t_intervals(m)
    ref = stats.t_interval(m[:, 0])
    assert tuple(t[:, 0]) == pytest.approx(ref[:3]) and np.isnan(t[:, 2]).all()


def test_round_sig_is_json_safe():
    assert stats.round_sig(1 / 3) == 0.333333
    assert stats.round_sig(123456789.0) == 123457000.0
    assert stats.round_sig(math.nan) is None and stats.round_sig(math.inf) is None
