"""What runs at the end of their budget let a claim decide (issue 11): run states against
numbers computed by hand, the scope rules, and the claims they qualify."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from claims_on_sweeps import judge, parse
from test_claims import BN, SEEDS, make_sweep

from bnmodels.study import convergence, stats
from bnmodels.study.convergence import (
    CONVERGED,
    DIVERGED,
    FALLING,
    PLATEAU,
    last_fifth_change,
    run_states,
    scope,
)
from bnmodels.study.evaluate import run_values
from bnmodels.study.metrics import epochs_to
from bnmodels.study.prepared import SweepData, prepare


def _fitted_change(row: np.ndarray) -> float:
    """The least-squares line of the log loss over the last fifth, by numpy, times its span."""
    n = len(row)
    cut = min(round(0.8 * n), n - 4)
    y = np.log(row[cut:])
    return np.polyfit(np.arange(len(y)), y, 1)[0] * (len(y) - 1)


def test_last_fifth_change_is_the_fitted_line_of_the_log_loss():
    rng = np.random.default_rng(1)
    c = rng.uniform(0.5, 3.0, size=(4, 60))
    assert last_fifth_change(c) == pytest.approx([_fitted_change(r) for r in c], rel=1e-10)
    # a run's own length (a steps budget): its last fifth, not the table's
    lengths = np.array([60, 30, 20, 10])
    want = [_fitted_change(r[:n]) for r, n in zip(c, lengths, strict=True)]
    assert last_fifth_change(c, lengths) == pytest.approx(want, rel=1e-10)
    assert np.isnan(last_fifth_change(np.ones((2, 3)))).all()  # too short for a line


def _noisy(rng, n_runs, epochs, change, sd, rho=0.0, level=2.0):
    """Log-linear curves whose last fifth changes by `change` (log), with AR(1) noise of
    stationary sd `sd` on the log scale."""
    e = np.arange(epochs, dtype=float)
    slope = change / (epochs - round(0.8 * epochs) - 1)
    eps = np.zeros((n_runs, epochs))
    eps[:, 0] = rng.normal(0, sd, n_runs)
    for i in range(1, epochs):
        eps[:, i] = rho * eps[:, i - 1] + rng.normal(0, sd * math.sqrt(1 - rho**2), n_runs)
    return level * np.exp(slope * e + eps)


def _state_shares(curves, baseline=100.0):
    s = _states({f"r{i}": row for i, row in enumerate(curves)}, baseline=baseline)
    return s["state"].value_counts(normalize=True)


@pytest.mark.parametrize(("rho", "level"), [(0.0, 0.05), (0.3, 0.06), (0.5, 0.075)])
def test_a_flat_noisy_run_is_rarely_called_falling_or_rising(rho, level):
    # no trend, noise of sd 0.1 (independent, then autocorrelated): the slope test holds
    # its one-sided level, 2.5% each way (the relevance floor of 5% only lowers it); the
    # lag-1 correction keeps it near that under autocorrelated noise
    curves = _noisy(np.random.default_rng(2), 600, 100, 0.0, 0.1, rho)
    shares = _state_shares(curves)
    assert shares.get(FALLING, 0) <= level and shares.get(convergence.RISING, 0) <= level


def test_a_run_falling_beyond_its_noise_is_falling_and_rising_is_rising():
    rng = np.random.default_rng(3)
    # a 25% fall over the last fifth under independent noise of sd 0.05: found nearly always
    assert _state_shares(_noisy(rng, 300, 100, math.log(0.75), 0.05))[FALLING] >= 0.95
    # the same fall drowned in noise of sd 0.3 is mostly not called anything
    assert _state_shares(_noisy(rng, 300, 100, math.log(0.75), 0.3)).get(FALLING, 0) < 0.5
    assert _state_shares(_noisy(rng, 300, 100, math.log(2.0), 0.05))[convergence.RISING] >= 0.95
    # a 3% steady fall is real but too small to matter: converged
    assert _state_shares(_noisy(rng, 300, 100, math.log(0.97), 0.001))[CONVERGED] == 1.0


def test_noise_that_swamps_the_level_is_unstable():
    shares = _state_shares(_noisy(np.random.default_rng(4), 100, 100, 0.0, 1.0))
    assert shares[convergence.UNSTABLE] == 1.0


def test_a_configuration_without_a_majority_is_mixed_with_its_counts():
    s = pd.Series([FALLING] * 4 + [PLATEAU] * 4 + [CONVERGED] * 2)
    assert convergence.state_words(s) == "mixed (4 still falling, 4 on the plateau, 2 converged)"
    assert convergence.state_words(pd.Series([FALLING] * 6 + [CONVERGED] * 4)) == FALLING


def _states(curves: dict[str, np.ndarray], baseline=10.0, diverged=()):
    runs = pd.DataFrame(
        {
            "task": "regression",
            "baseline_test_mse": baseline,
            "diverged": [k in diverged for k in curves],
        },
        index=list(curves),
    )
    m = pd.DataFrame(np.vstack(list(curves.values())), index=list(curves))
    return run_states(runs, {"test_mse": m})


def test_run_states_read_the_loss_against_the_constant_predictor():
    e = np.arange(1, 101, dtype=float)
    s = _states(
        {
            "plateau": np.full(100, 10.3),  # within 5% of the constant predictor's 10
            "falling": 5 * np.exp(-e / 30),  # -47% over the last fifth (epochs 81-100)
            "converged": 2 + np.exp(-e),
            "worse": np.full(100, 40.0),  # four times the constant predictor: not a plateau
            "diverged": np.r_[np.full(50, 3.0), np.full(50, np.nan)],
        },
        diverged=("diverged",),
    )
    assert s["state"].to_dict() == {
        "plateau": PLATEAU,
        "falling": FALLING,
        "converged": CONVERGED,
        "worse": CONVERGED,
        "diverged": DIVERGED,
    }
    assert s.loc["converged", "r2"] == pytest.approx(1 - (2 + math.exp(-100)) / 10)
    assert s.loc["falling", "last_fifth_change"] == pytest.approx(-19 / 30)  # exact line


def test_the_plateau_is_read_on_the_path_collapses_and_explosions_are_failures():
    e = np.arange(100, dtype=float)
    s = _states(
        {
            # starts above the constant predictor's 10, settles on it, never 10% below
            "plateau": 10.2 + 20 * np.exp(-e / 5),
            # leaves the plateau (down to 0.5 of it, as dying ReLUs do), then comes back
            "collapsed": np.where(e < 50, 10 - 5 * np.sin(np.pi * e / 50), 10.2),
            "exploded": np.full(100, 1.8e14),  # the referee's test MSE
            "far_but_finite": np.full(100, 1e6),  # 1e5 x: terrible, not exploded
        }
    )["state"]
    assert s["plateau"] == PLATEAU and s["collapsed"] == convergence.COLLAPSED
    assert s["exploded"] == convergence.EXPLODED and s["far_but_finite"] == CONVERGED
    assert {convergence.COLLAPSED, convergence.EXPLODED, DIVERGED} == set(convergence.FAILED)


def test_a_rising_run_is_never_converged():
    rng = np.random.default_rng(6)
    # the referee's lr=1 run: from 339x to 1364x the constant predictor, noisy on the way
    e = np.arange(300, dtype=float)
    up = 339 * np.exp(np.log(1364 / 339) * e / 299 + rng.normal(0, 0.3, 300))
    assert _states({"up": up}, baseline=1.0)["state"]["up"] != CONVERGED
    # rises of 10% to 50% over the last fifth, buried in noise or not: "converged" needs
    # the change shown within +-5%, which a real rise passes at most at the test's level
    for change in (0.1, 0.2, 0.5):
        for sd in (0.01, 0.1, 0.3):
            shares = _state_shares(_noisy(rng, 200, 40, math.log1p(change), sd))
            assert shares.get(CONVERGED, 0) <= convergence.TREND_ALPHA, (change, sd)


def test_a_flat_run_is_converged_only_when_its_noise_shows_it():
    rng = np.random.default_rng(7)
    # flat, quiet, 100 epochs: shown flat nearly always
    assert _state_shares(_noisy(rng, 200, 100, 0.0, 0.01))[CONVERGED] >= 0.95
    # flat but noisy over 8 points (40 epochs): too few to show flat or moving
    shares = _state_shares(_noisy(rng, 200, 40, 0.0, 0.2))
    assert shares[convergence.UNDETERMINED] >= 0.8


def _runs(states: dict[str, list[str]]) -> pd.DataFrame:
    rows = [
        {"bn": bn, "seed": i, "state": st} for bn, sts in states.items() for i, st in enumerate(sts)
    ]
    return pd.DataFrame(rows)


def _moving(path, verdict="supported", expect="lower", margin=0.0):
    return convergence.Movement(verdict, expect, margin, np.asarray(path, dtype=float))


def test_scope_rules():
    conv, fall, plat = [CONVERGED] * 10, [FALLING] * 6 + [CONVERGED] * 4, [PLATEAU] * 10
    closing = _moving([-1.0, -0.8, -0.6, -0.4, -0.2])  # the gap closes: gone within a budget
    steady = _moving([-0.5, -0.52, -0.48, -0.5, -0.5])
    s = scope(_runs({"none": conv, "pre": conv}), ["bn"], 40, False, False, closing)
    assert (s.kind, s.decides, s.note) == (convergence.DECIDED, True, "")  # nothing moves
    s = scope(_runs({"none": fall, "pre": conv}), ["bn"], 40, False, False, closing)
    assert s.kind == convergence.UNDECIDED and not s.decides and "bn=none" in s.note
    # still falling, but the effect holds: decided as a stable effect, and the note says so
    s = scope(_runs({"none": fall, "pre": conv}), ["bn"], 40, False, False, steady)
    assert s.kind == convergence.STABLE and s.decides and "bn=none" in s.note
    # not shown converged (too noisy to tell) moves as falling does
    und = [convergence.UNDETERMINED] * 6 + [CONVERGED] * 4
    assert not scope(_runs({"none": und, "pre": conv}), ["bn"], 40, False, False, closing).decides
    # collapsed runs end on the plateau: about leaving it, and the note says they collapsed
    col = [convergence.COLLAPSED] * 7 + [PLATEAU] * 3
    s = scope(_runs({"none": col, "pre": conv}), ["bn"], "40 epochs", False, False, steady)
    assert s.kind == convergence.TRAINABILITY and "70% collapsed" in s.note
    assert "for all" not in s.note
    # 3 of 10 falling is enough to move; 2 of 10 is not
    three = [FALLING] * 3 + [CONVERGED] * 7
    two = [FALLING] * 2 + [CONVERGED] * 8
    assert not scope(_runs({"none": three, "pre": conv}), ["bn"], 40, False, False, closing).decides
    assert scope(_runs({"none": two, "pre": conv}), ["bn"], 40, False, False, closing).decides
    # a measure over training is not invalidated by a run still learning
    s = scope(_runs({"none": fall, "pre": conv}), ["bn"], 40, False, True, closing)
    assert s.kind == convergence.DECIDED
    s = scope(_runs({"none": plat, "pre": conv}), ["bn"], 40, False, False, steady)
    assert s.kind == convergence.TRAINABILITY and s.decides and "bn=none" in s.note
    # a measure over training where one arm never trained was taken on a flat landscape
    s = scope(_runs({"none": plat, "pre": conv}), ["bn"], 40, speed=False, mechanism=True)
    assert s.kind == convergence.ON_PLATEAU and s.decides and "flat plateau" in s.note
    s = scope(_runs({"none": plat, "pre": plat}), ["bn"], 40, speed=False, mechanism=True)
    assert not s.decides
    s = scope(_runs({"none": fall, "pre": plat}), ["bn"], 40, speed=True, mechanism=False)
    assert s.kind == convergence.SPEED and s.decides


def test_the_guard_undoes_a_verdict_only_where_more_training_would():
    cc = convergence.could_change
    assert cc(_moving([-1.0, -0.8, -0.6, -0.4, -0.2]))  # would cross zero
    assert not cc(_moving([-0.2, -0.4, -0.6, -0.8, -1.0]))  # growing
    assert not cc(_moving([-1.0, -0.98, -0.96, -0.94, -0.92]))  # shrinking, -0.52 after
    # a refuted claim comes back only if the effect heads to the expected side
    assert cc(_moving([1.0, 0.8, 0.6, 0.4, 0.2], "not supported"))
    assert not cc(_moving([0.2, 0.4, 0.6, 0.8, 1.0], "not supported"))
    # same-claims: the margin, both ways; identical arms (0 all along) never move
    assert not cc(_moving([0.0] * 5, "supported", "same", 0.2))
    assert cc(_moving([0.0, 0.05, 0.1, 0.15, 0.19], "supported", "same", 0.2))
    assert cc(_moving([0.6, 0.5, 0.4, 0.3, 0.25], "not supported", "same", 0.2))
    assert not cc(_moving([-0.2, -0.4, -0.6, -0.8, -1.0], "inconclusive"))
    assert not cc(_moving([], "supported"))  # no path: a measure, not a final error
    # the projection is the least-squares line carried one budget on
    path = np.array([0.3, 0.1, 0.2, -0.1, 0.0])
    slope = np.polyfit(convergence.PATH, path, 1)[0]
    assert convergence.projected(path) == pytest.approx(path[-1] + slope)


def _falling(cfg, epochs):
    """bn=none still falls steeply at the end (and ends 4x higher); bn=pre has converged."""
    if cfg["bn"] == "none":
        return 8.0 * np.exp(-(epochs - epochs[-1]) / 10.0)
    return 2.0 * (1 + 3 * np.exp(-(epochs - 1.0)))


def test_a_final_error_claim_on_runs_still_falling_is_not_decided():
    data = make_sweep({"bn": ["none", "pre"]}, lambda c: 1.0, curve=_falling, fixed={"epochs": 30})
    r = judge(
        data,
        lower={**BN, "expect": "lower"},
        speed={**BN, "expect": "lower", "metric": "epochs_to_test_mse", "threshold": 4.0},
    )
    lower = r["lower"]
    assert lower.p_holm < 0.05 and lower.estimate < 0  # the numbers say BN is lower ...
    assert lower.verdict == stats.INCONCLUSIVE  # ... but bn=none is still falling
    assert lower.scope.kind == convergence.UNDECIDED and "bn=none" in lower.scope.note
    assert r["speed"].scope.kind == convergence.SPEED


def test_a_claim_with_one_arm_on_the_plateau_says_so_and_keeps_its_verdict():
    data = make_sweep({"bn": ["none", "pre"]}, lambda c: 10.0 if c["bn"] == "none" else 2.0)
    data.runs["baseline_test_mse"] = (
        data.runs["final_test_mse"]
        .where(data.runs["bn"] == "none", np.nan)
        .groupby(data.runs["seed"])
        .transform("max")
    )  # each seed's no-BN run: on the plateau
    r = judge(data, lower={**BN, "expect": "lower"})["lower"]
    assert r.verdict == stats.SUPPORTED
    assert r.scope.kind == convergence.TRAINABILITY and "bn=none" in r.scope.note


def test_diverged_runs_count_as_failures_at_the_worst_value():
    data = make_sweep({"bn": ["none", "pre"]}, lambda c: 2.0 if c["bn"] == "none" else 1.0)
    runs = data.runs
    gone = (runs["bn"] == "pre") & runs["seed"].isin(SEEDS[:4])
    runs.loc[gone, ["final_test_mse", "diverged"]] = [np.nan, True]
    r = judge(data, lower={**BN, "expect": "lower"})["lower"]
    # by hand: the diverged runs take the sweep's largest log final test MSE
    logs = np.log(runs["final_test_mse"])
    worst = logs.max()
    pre = logs.where(runs["bn"] == "pre").fillna(worst).where(runs["bn"] == "pre")
    per_seed = (
        pre.groupby(runs["seed"]).max()
        - logs.where(runs["bn"] == "none").groupby(runs["seed"]).max()
    )
    assert r.estimate == pytest.approx(per_seed.mean(), rel=1e-12)
    assert r.n == len(SEEDS) and r.n_failed == 4 and r.n_dropped == 0


def test_a_baseline_fraction_threshold_is_fixed_per_data_set():
    axes = {"dataset": ["quad2", "quad5"], "bn": ["none", "pre"]}
    data = make_sweep(axes, lambda c: 1.0, noise_keys=("bn", "dataset"))
    base = {"quad2": 2.0, "quad5": 5.0}
    data.runs["baseline_train_mse"] = data.runs["dataset"].map(base)
    claim = {**BN, "metric": "epochs_to_train_mse", "threshold": {"baseline_fraction": 0.9}}
    sw = prepare("s", data)
    r = judge(data, faster={**claim, "expect": "lower"})["faster"]
    # by hand: each run's epochs to 0.9 x its data set's constant predictor
    hist = data.history.pivot(index="run_key", columns="epoch", values="train_mse")
    hist = hist.loc[sw.runs["run_key"]].to_numpy()
    want = [
        epochs_to(row[None, :], 0.9 * base[ds])[0]
        for row, ds in zip(hist, sw.runs["dataset"], strict=True)
    ]
    got = run_values(parse(data, c={**claim, "expect": "lower"})[0], sw).to_numpy()
    assert got == pytest.approx(want)
    assert np.isfinite(r.estimate)


def test_a_trend_over_the_levels_where_keeps():
    data = make_sweep(
        {"bn": ["none", "pre"], "depth": [1, 2, 4]},
        lambda c: 2.0 * ((0.5, 0.25, 9.0)[(1, 2, 4).index(c["depth"])] if c["bn"] == "pre" else 1),
    )
    claim = {**BN, "kind": "trend", "along": "depth", "expect": "lower"}
    r = judge(data, t={**claim, "where": {"depth": [1, 2]}})["t"]
    # two levels: the slope is the change of the per-seed effect from depth 1 to 2
    t = data.runs.assign(v=np.log(data.runs["final_test_mse"]))
    t = t.pivot_table(index="seed", columns=["depth", "bn"], values="v")
    effect = {d: t[(d, "pre")] - t[(d, "none")] for d in (1, 2)}
    assert r.estimate == pytest.approx((effect[2] - effect[1]).mean(), rel=1e-12)
    assert r.estimate == pytest.approx(math.log(0.5), abs=0.2)  # the planted slope
    assert "depth 4" not in r.detail


def test_gradient_spread_and_tilt_use_the_scale_invariant_ratio():
    data = make_sweep({"bn": ["none", "pre"]}, lambda c: 1.0)
    rng = np.random.default_rng(3)
    h = data.history
    ratios = rng.uniform(1e-3, 1.0, size=(len(h), 2))
    h["grad_ratio_l1"], h["grad_ratio_l2"] = ratios[:, 0], ratios[:, 1]
    h["grad_std_l1"], h["grad_std_l2"] = 1.0, 1e-6  # raw sizes: not what is compared
    sw = prepare("s", SweepData(data.runs, h, {}, data.axes))
    for key, g in h.groupby("run_key"):
        l1, l2 = np.log10(g["grad_ratio_l1"]).mean(), np.log10(g["grad_ratio_l2"]).mean()
        row = sw.runs.set_index("run_key").loc[key]
        assert row["grad_spread"] == pytest.approx(abs(l1 - l2), rel=1e-12)
        assert row["grad_tilt"] == pytest.approx(l1 - l2, rel=1e-12)


def test_runs_of_a_steps_budget_are_read_at_their_own_last_epoch():
    # 50 SGD steps: a batch of 10 (7 batches an epoch) makes 8 epochs, a batch of 100 makes
    # 50; the history table holds 50 epoch columns, NaN past a run's own last epoch.
    runs, hist = [], []
    rng = np.random.default_rng(5)
    own = {10: 8, 100: 50}
    for bs, bn, seed in [(b, n, s) for b in own for n in ("none", "pre") for s in SEEDS]:
        key = f"b{bs}-{bn}-s{seed}"
        curve = rng.uniform(1.0, 2.0) * np.exp(-np.arange(own[bs]) / 20)
        runs.append(
            {
                **{
                    k: v
                    for k, v in make_sweep({"bn": ["none"]}, lambda c: 1.0).runs.iloc[0].items()
                    if k != "run_key"
                },
                "batch_size": bs,
                "bn": bn,
                "seed": seed,
                "epochs": own[bs],
                "steps": 50,
                "run_key": key,
                "final_test_mse": curve[-1],
                "best_test_mse": curve.min(),
                "diverged": False,
            }
        )
        hist += [
            {"run_key": key, "epoch": e + 1, "train_mse": t, "test_mse": t}
            for e, t in enumerate(curve)
        ]
    data = SweepData(pd.DataFrame(runs), pd.DataFrame(hist), {}, {"bn": ["none", "pre"]})
    sw = prepare("s", data)
    assert set(sw.axes) == {"batch_size", "bn"} and sw.budget == "50 SGD steps"
    h = data.history.pivot(index="run_key", columns="epoch", values="test_mse")
    for _, r in sw.runs.iterrows():
        c = h.loc[r["run_key"]].dropna().to_numpy()
        assert len(c) == own[r["batch_size"]]
        assert r["last_fifth_change"] == pytest.approx(_fitted_change(c), rel=1e-10)
    claim = parse(data, c={**BN, "metric": "last2_test_mse", "expect": "lower"})[0]
    got = run_values(claim, sw)
    for key, v in got.items():
        c = h.loc[key].dropna().to_numpy()
        assert v == pytest.approx(math.log(c[-2:].mean()), rel=1e-12)
