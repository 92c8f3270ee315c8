"""The calibration can fail: it passes on the real verdict pipeline, for every claim kind,
and fails on pipelines with a planted bug (study/calibration.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from configs import RUN_DEFAULTS

from bnmodels.experiment.config import CONFIG_KEYS
from bnmodels.study import calibration, evaluate, exact, verdicts
from bnmodels.study.prepared import SweepData, prepare

TRIALS, POWER_TRIALS = 40, 8


@pytest.fixture(scope="module")
def replicas():
    """One configuration, 80 seeds, 8 on each of 10 draws of the data (8 levels for the
    optimum world); each run's final test MSE is its draw's difficulty times its own noise
    (log sd 0.3), its curve settles well before the end (converged)."""
    rng = np.random.default_rng(11)
    difficulty = np.exp(rng.normal(0, 0.5, 10))
    runs, hist = [], []
    epochs = np.arange(1, 21)
    for seed in range(100, 180):
        draw = seed % 10
        cfg = {**RUN_DEFAULTS, "epochs": 20, "seed": seed, "draw": draw}
        key = "-".join(str(cfg[k]) for k in CONFIG_KEYS) + f"-{seed}"
        final = 2.0 * difficulty[draw] * math.exp(rng.normal(0, 0.3))
        test = final * (1 + 3 * np.exp(-(epochs - 1.0)))
        runs.append(
            {
                **cfg,
                "run_key": key,
                "final_train_mse": 0.9 * test[-1],
                "final_test_mse": test[-1],
                "best_test_mse": test.min(),
                "diverged": False,
                "baseline_test_mse": 50.0,
                "baseline_train_mse": 50.0,
            }
        )
        hist += [
            {"run_key": key, "epoch": e, "train_mse": 0.9 * t, "test_mse": t}
            for e, t in zip(epochs, test, strict=True)
        ]
    return prepare("aa", SweepData(pd.DataFrame(runs), pd.DataFrame(hist), {}, {}))


def _table(sw, **kw) -> pd.DataFrame:
    return calibration.calibrate(sw, trials=TRIALS, power_trials=POWER_TRIALS, **kw)


@pytest.mark.slow
def test_the_real_pipeline_passes_for_every_claim_kind(replicas):
    cal = _table(replicas).set_index("kind")
    assert set(cal.index) == {*calibration.KINDS, "family"}
    assert cal.loc["family", "trials"] == TRIALS
    assert calibration.passes(cal.reset_index()), cal.to_string()
    # no effect: the family is rarely wrong; an effect of the printed size: mostly found
    assert cal.loc["family", "false_rate"] <= 0.1
    for kind in ("pair", "trend", "interaction", "optimum"):
        assert cal.loc[kind, "power"] >= 0.6, (kind, cal.loc[kind, "power"])


@pytest.mark.slow
def test_the_best_level_chosen_on_the_same_seeds_fails_the_calibration(replicas, monkeypatch):
    def same_seeds(table, levels, sign):  # the bug: each seed's own value picks its best
        t = table[list(levels)] * sign
        return t.idxmin(axis=1)

    monkeypatch.setattr(evaluate, "_cv_best", same_seeds)
    cal = _table(replicas).set_index("kind")
    assert not cal.loc["optimum", "passes"], cal.to_string()
    assert cal.loc["optimum", "false_rate"] > 0.1


@pytest.mark.slow
def test_a_family_without_holm_fails_the_calibration(replicas, monkeypatch):
    monkeypatch.setattr(exact, "holm_primary", lambda p, primary: np.asarray(p, dtype=float))
    cal = _table(replicas)
    assert not calibration.passes(cal), cal.to_string()
    assert cal.set_index("kind").loc["family", "false_rate"] > 0.1


@pytest.mark.slow
def test_an_arm_paired_with_itself_fails_the_power_check(replicas, monkeypatch):
    real = evaluate._difference

    def itself(a, b, m):  # the bug: the compare arm minus its own value (a wrong pairing)
        return real(a, a, m)

    monkeypatch.setattr(evaluate, "_difference", itself)
    cal = _table(replicas).set_index("kind")
    # every seed's difference is 0: nothing is ever found, and no detectable effect can
    # even be printed, so the power check cannot run: not passed
    assert not cal.loc["pair", "passes"] and not cal.loc["pair", "power"] > 0


def test_the_worlds_pair_runs_that_share_their_data(replicas):
    (w,) = calibration.worlds(replicas)
    draws = replicas.runs["draw"].to_numpy()[w.groups]
    assert w.groups.shape == (calibration.ARM_SEEDS, 8)
    assert (draws == draws[:, :1]).all()  # each fake seed: four runs on one draw
    grid, line, equiv = calibration.trial_worlds(w, np.random.default_rng(0), "t")
    assert sorted(grid.axes) == ["bn", "depth"] and list(line.axes) == ["lr"]
    assert len(grid.runs) == 40 and len(line.axes["lr"]) == 8
    # the equivalence world's compare arm sits exactly at the margin (the fixture's train
    # MSE, untouched, is 0.9 x the test MSE)
    r = equiv.runs
    ratio = r["final_test_mse"] / (r["final_train_mse"] / 0.9)
    assert ratio[r["bn"] == "pre"].to_numpy() == pytest.approx(1 + calibration.MARGIN["log"])
    assert ratio[r["bn"] == "none"].to_numpy() == pytest.approx(1.0)
    assert verdicts.decide  # the path the calibration judges with is the report's own
