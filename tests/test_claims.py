"""The claim engine on synthetic sweeps with planted (or absent) effects: each kind is
recognised where its effect is there and not where it is absent."""

from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pandas as pd
import pytest
from claims_on_sweeps import judge
from configs import RUN_DEFAULTS

from bnmodels.experiment.config import CONFIG_KEYS
from bnmodels.study import stats
from bnmodels.study.metrics import epochs_to
from bnmodels.study.prepared import SweepData, prepare

SEEDS = tuple(range(24, 34))
DEFAULTS = {**RUN_DEFAULTS, "epochs": 5}


def _noise(seed: int, cfg: dict, keys) -> float:
    """A run's own noise, a function of the keys that change what it computes."""
    key = repr((seed, *(cfg[k] for k in keys))).encode()
    return np.random.default_rng(zlib.crc32(key)).normal(0, 0.1)


def make_sweep(
    axes: dict, final, curve=None, fixed=None, noise_keys=("bn", "depth", "activation", "lr")
):
    """runs.csv and history.csv of a sweep whose final test MSE is `final(cfg)` times a
    per-seed factor shared by every configuration (same batches and initial weights)
    times each run's own noise; `curve(cfg, epochs)` replaces the test-MSE curve."""
    shared = dict(
        zip(SEEDS, np.exp(np.random.default_rng(0).normal(0, 0.3, len(SEEDS))), strict=True)
    )
    runs, hist = [], []
    for values in itertools.product(*axes.values()):
        for seed in SEEDS:
            cfg = {
                **DEFAULTS,
                **(fixed or {}),
                **dict(zip(axes, values, strict=True)),
                "seed": seed,
            }
            key = "-".join(str(cfg[k]) for k in CONFIG_KEYS)
            epochs = np.arange(1, cfg["epochs"] + 1)
            f = final(cfg) * shared[seed] * math.exp(_noise(seed, cfg, noise_keys))
            test = curve(cfg, epochs) if curve else f * (1 + 3 * np.exp(-(epochs - 1.0)))
            runs.append(
                {
                    **cfg,
                    "run_key": key,
                    "final_train_mse": 0.9 * test[-1],
                    "final_test_mse": test[-1],
                    "best_test_mse": test.min(),
                    "diverged": False,
                }
            )
            hist += [
                {
                    "run_key": key,
                    "epoch": e,
                    "train_mse": 0.9 * t,
                    "test_mse": t,
                    "dead_fraction": 0.1,
                }
                for e, t in zip(epochs, test, strict=True)
            ]
    return SweepData(pd.DataFrame(runs), pd.DataFrame(hist), {}, axes)


BN = {"compare": {"bn": "pre"}, "against": {"bn": "none"}, "metric": "final_test_mse"}


def test_a_planted_bn_effect_is_found_with_its_size():
    data = make_sweep(
        {"bn": ["none", "pre"], "depth": [1, 2]}, lambda c: 2.0 * (0.5 if c["bn"] == "pre" else 1.0)
    )
    r = judge(data, halves={**BN, "expect": "lower"}, raises={**BN, "expect": "higher"})
    assert r["halves"].verdict == stats.SUPPORTED
    assert r["halves"].estimate == pytest.approx(math.log(0.5), abs=0.1)
    assert r["halves"].ci_low < math.log(0.5) < r["halves"].ci_high
    assert r["raises"].verdict == stats.NOT_SUPPORTED
    assert r["halves"].n == len(SEEDS) and r["halves"].p_holm < 0.05


def test_momentum_without_bn_is_a_null_effect():
    # Without BN, momentum is never used: the arms are bit-identical run for run.
    data = make_sweep({"momentum": [0.1, 0.9], "depth": [1, 2]}, lambda c: 2.0)
    arms = data.runs.groupby("momentum")["final_test_mse"].apply(list)
    assert arms[0.1] == arms[0.9]  # bit-identical
    m = {"compare": {"momentum": 0.9}, "against": {"momentum": 0.1}, "metric": "final_test_mse"}
    r = judge(data, lower={**m, "expect": "lower"}, same={**m, "expect": "same", "margin": 0.1})
    assert r["lower"].verdict != stats.SUPPORTED
    assert (r["lower"].estimate, r["lower"].ci_low, r["lower"].ci_high) == (0.0, 0.0, 0.0)
    assert r["lower"].p == 1.0
    assert r["same"].verdict == stats.SUPPORTED


@pytest.mark.parametrize(("per_layer", "expected"), [(0.7, stats.SUPPORTED), (1.0, "absent")])
def test_a_trend_is_recognised_only_where_planted(per_layer, expected):
    # BN's factor on the error is 0.5 * per_layer**depth: it helps more with depth when < 1.
    data = make_sweep(
        {"bn": ["none", "pre"], "depth": [1, 2, 3, 4]},
        lambda c: 2.0 * (0.5 * per_layer ** c["depth"] if c["bn"] == "pre" else 1),
    )
    r = judge(data, t={**BN, "kind": "trend", "along": "depth", "expect": "lower"})["t"]
    if expected == "absent":
        assert r.verdict != stats.SUPPORTED and r.ci_low < 0 < r.ci_high
    else:
        assert r.verdict == expected
        assert r.estimate == pytest.approx(math.log(per_layer), abs=0.05)


@pytest.mark.parametrize(("tanh", "expected"), [(0.2, stats.SUPPORTED), (0.5, "absent")])
def test_an_interaction_is_recognised_only_where_planted(tanh, expected):
    factor = {"sigmoid": 0.5, "tanh": tanh}  # BN's factor on the error per activation
    data = make_sweep(
        {"activation": ["sigmoid", "tanh"], "bn": ["none", "pre"]},
        lambda c: 2.0 * (factor[c["activation"]] if c["bn"] == "pre" else 1),
    )
    claim = {
        **BN,
        "kind": "interaction",
        "group": {"activation": "tanh"},
        "than": {"activation": "sigmoid"},
        "expect": "lower",
    }
    r = judge(data, i=claim)["i"]
    # Each run's own noise (sd 0.1) leaves the interaction's per-seed value an sd of 0.2:
    # the estimate is within 4 standard errors of the planted log(tanh / 0.5).
    assert r.estimate == pytest.approx(math.log(tanh / 0.5), abs=0.25)
    if expected == "absent":
        assert r.verdict != stats.SUPPORTED
    else:
        assert r.verdict == expected


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (lambda lr: 1 + (math.log10(lr) + 1.5) ** 2, stats.SUPPORTED),  # minimum near 0.03
        (lambda lr: lr**-0.5, stats.NOT_SUPPORTED),  # monotone: best at the largest lr
    ],
)
def test_an_optimum_is_recognised_and_a_monotone_curve_rejected(shape, expected):
    data = make_sweep({"lr": [0.001, 0.01, 0.1, 1.0]}, lambda c: shape(c["lr"]))
    claim = {"kind": "optimum", "along": "lr", "metric": "final_test_mse", "expect": "minimum"}
    assert judge(data, u=claim)["u"].verdict == expected


@pytest.mark.parametrize("epochs", [5, 50])
def test_censored_epochs_count_by_order_never_as_a_number(epochs):
    # zscore runs reach the threshold at epoch 2, none runs never do. The effect is the
    # same whatever the horizon: "never" is not counted as epochs + 1.
    def curve(cfg, e):
        return np.where(e >= 2, 0.5, 4.0) if cfg["normalization"] == "zscore" else 4.0 + 0 * e

    data = make_sweep(
        {"normalization": ["none", "zscore"]}, lambda c: 1.0, curve=curve, fixed={"epochs": epochs}
    )
    claim = {
        "compare": {"normalization": "zscore"},
        "against": {"normalization": "none"},
        "metric": "epochs_to_train_mse",
        "threshold": 1.0,
        "expect": "lower",
    }
    r = judge(data, sooner=claim)["sooner"]
    # every seed sooner: the exact test's floor, 2 / 2^n (never 0 from a t-test on constants)
    assert (r.estimate, r.p, r.verdict) == (-1.0, 2 / 2 ** len(SEEDS), stats.SUPPORTED)


def test_both_never_reaching_is_a_tie():
    data = make_sweep(
        {"normalization": ["none", "zscore"]}, lambda c: 1.0, curve=lambda cfg, e: 4.0 + 0 * e
    )
    claim = {
        "compare": {"normalization": "zscore"},
        "against": {"normalization": "none"},
        "metric": "epochs_to_train_mse",
        "threshold": 1.0,
        "expect": "lower",
    }
    r = judge(data, c=claim)["c"]
    assert r.estimate == 0.0 and r.p == 1.0 and r.verdict == stats.INCONCLUSIVE


def test_the_family_is_corrected_together():
    data = make_sweep(
        {"bn": ["none", "pre"], "depth": [1, 2]}, lambda c: 2.0 * (0.9 if c["bn"] == "pre" else 1.0)
    )
    r = judge(
        data,
        a={**BN, "expect": "lower"},
        b={**BN, "metric": "final_train_mse", "expect": "lower"},
        c={**BN, "metric": "best_test_mse", "expect": "lower"},
    )
    ps = [r[k].p for k in "abc"]
    assert [r[k].p_holm for k in "abc"] == pytest.approx(list(stats.holm(ps)))
    assert all(r[k].p_holm >= r[k].p for k in "abc")


def test_a_best_arm_is_chosen_on_the_other_seeds():
    # Error is lowest at lr 0.1; the gain from tuning (lr 0.001 vs the best lr) is large.
    data = make_sweep({"lr": [0.001, 0.01, 0.1, 1.0]}, lambda c: 1 + (math.log10(c["lr"]) + 1) ** 2)
    claim = {
        "compare": {"lr": 0.001},
        "against": {"lr": "best"},
        "metric": "final_test_mse",
        "expect": "higher",
    }
    r = judge(data, gain=claim)["gain"]
    assert r.verdict == stats.SUPPORTED
    assert r.estimate == pytest.approx(math.log(5.0), abs=0.15)  # (1 + 4) / (1 + 0)


def test_epochs_to_is_the_first_hit_and_inf_when_never():
    curves = np.array(
        [
            [10.0, 6.0, 4.0, 5.0, 3.0],  # first at or below 5 in epoch 3
            [10.0, 9.0, 8.0, 7.0, 6.0],  # never
            [10.0, np.nan, np.nan, np.nan, np.nan],  # diverged after epoch 1: never
            [5.0, 9.0, 9.0, 9.0, 9.0],  # epoch 1
        ]
    )
    np.testing.assert_array_equal(epochs_to(curves, 5.0), [3.0, np.inf, np.inf, 1.0])
    # A higher-is-better column (accuracy) reaches its threshold from below.
    np.testing.assert_array_equal(epochs_to(-curves, -5.0, higher_is_better=True)[:1], [3.0])


def test_probe_and_precise_bn_claims_are_judged_and_summarised_as_mechanisms():
    from bnmodels.report.mechanisms import mechanisms_markdown

    data = make_sweep({"bn": ["none", "pre"]}, lambda c: 2.0)
    # a planted landscape effect: BN halves probe_beta at every epoch; precise BN statistics
    # cut the error of BN runs by 20% (a gap of 1.25), none without BN
    beta = np.where(data.history["run_key"].str.contains("-pre-"), 0.5, 1.0) * 3.0
    noise = np.random.default_rng(1).normal(0, 0.05, len(beta))
    data.history["probe_beta"] = beta * np.exp(noise)
    pre = data.runs["bn"] == "pre"
    data.runs["final_test_mse_precise_bn"] = np.where(
        pre, data.runs["final_test_mse"] / 1.25, np.nan
    )
    r = judge(
        data,
        smoother={**BN, "metric": "mean_probe_beta", "expect": "lower"},
        rougher={**BN, "metric": "mean_probe_beta", "expect": "higher"},
    )
    assert r["smoother"].verdict == stats.SUPPORTED
    assert r["smoother"].estimate == pytest.approx(math.log(0.5), abs=0.05)
    assert r["rougher"].verdict == stats.NOT_SUPPORTED
    gap = prepare("s", data).runs["precise_bn_gap"]
    assert np.allclose(gap[pre], 1.25) and gap[~pre].isna().all()
    text = mechanisms_markdown(list(r.values()))
    assert "Of the 2 landscape claims, 1 point the paper's way, 1 the other way" in text
    assert mechanisms_markdown([]) == ""
