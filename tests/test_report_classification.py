"""The report of classification sweeps, alone and mixed with regression: accuracy curves
(higher is better, linear 0-1), summary columns, tables, metrics, and claims on accuracy."""

from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pandas as pd
import pytest
from claims_on_sweeps import judge, parse
from configs import RUN_DEFAULTS

from bnmodels.experiment.config import CONFIG_KEYS
from bnmodels.report.build import SweepData, build_report
from bnmodels.study import stats
from bnmodels.study.prepared import prepare, summary

SEEDS = tuple(range(24, 32))
EPOCHS = 6
DEFAULTS = {**RUN_DEFAULTS, "dataset": "blobs3", "epochs": EPOCHS}
REGRESSION_COLUMNS = ("final_train_mse", "final_test_mse", "best_test_mse")
CLASSIFICATION_COLUMNS = (
    "final_train_ce",
    "final_test_ce",
    "final_test_accuracy",
    "best_test_accuracy",
)


def _noise(seed: int, cfg: dict, scale: float) -> float:
    key = repr((seed, *(cfg[k] for k in ("dataset", "bn", "depth", "activation")))).encode()
    return np.random.default_rng(zlib.crc32(key)).normal(0, scale)


def _classification_run(cfg: dict, accuracy: float, diverge_at: int | None):
    """A run's history and runs.csv numbers: accuracy rising from chance to `accuracy`,
    cross-entropy falling; NaN from `diverge_at` on."""
    e = np.arange(1, EPOCHS + 1)
    test_acc = 1 / 3 + (accuracy - 1 / 3) * (1 - np.exp(-(e - 0.5)))
    test_ce = 0.5 + 0.6 * np.exp(-(e - 1.0))
    hist = {
        "train_ce": 0.95 * test_ce,
        "test_ce": test_ce,
        "train_accuracy": np.minimum(test_acc + 0.02, 1.0),
        "test_accuracy": test_acc,
    }
    if diverge_at is not None:
        for v in hist.values():
            v[diverge_at - 1 :] = np.nan
    run = {
        "final_train_ce": hist["train_ce"][-1],
        "final_test_ce": hist["test_ce"][-1],
        "final_test_accuracy": hist["test_accuracy"][-1],
        "best_test_accuracy": np.nanmax(hist["test_accuracy"]) if diverge_at != 1 else np.nan,
    }
    return hist, run


def _regression_run(cfg: dict, mse: float):
    e = np.arange(1, EPOCHS + 1)
    test = mse * (1 + 3 * np.exp(-(e - 1.0)))
    hist = {"train_mse": 0.9 * test, "test_mse": test}
    run = {"final_train_mse": 0.9 * test[-1], "final_test_mse": test[-1], "best_test_mse": mse}
    return hist, run


def make_sweep(axes, accuracy, *, fixed=None, mse=None, diverge_at=None, seed_effect=True):
    """runs.csv, history.csv and diagnostics.json of a sweep. A classification run's final
    test accuracy is `accuracy(cfg)` plus a per-seed shift shared by every configuration and
    its own noise; a run of data set quad2 is a regression run of final test MSE `mse(cfg)`.
    runs.csv has the columns of each kind the sweep holds, the other kind's empty."""
    shift = dict(zip(SEEDS, np.random.default_rng(0).normal(0, 0.03, len(SEEDS)), strict=True))
    runs, hist, diag = [], [], {}
    for values in itertools.product(*axes.values()):
        for seed in SEEDS:
            cfg = {**DEFAULTS, **(fixed or {}), **dict(zip(axes, values, strict=True))}
            cfg["seed"] = seed
            key = "-".join(str(cfg[k]) for k in CONFIG_KEYS)
            if cfg["dataset"] == "quad2":
                h, r = _regression_run(cfg, mse(cfg) * math.exp(_noise(seed, cfg, 0.1)))
            else:
                a = accuracy(cfg) + (shift[seed] if seed_effect else 0) + _noise(seed, cfg, 0.01)
                h, r = _classification_run(cfg, a, diverge_at(cfg) if diverge_at else None)
            for e in range(EPOCHS):
                row = {"run_key": key, "epoch": e + 1, **{k: v[e] for k, v in h.items()}}
                for i in range(1, cfg["depth"] + 2):
                    row[f"grad_std_l{i}"] = 10.0 ** (-0.3 * (cfg["depth"] + 1 - i))
                row["dead_fraction"] = 0.05 if cfg["activation"] == "relu" else np.nan
                hist.append(row)
            diag[key] = {"weight_grad": [[0.1, -0.1]] * (cfg["depth"] + 1)}
            diverged = not np.isfinite(list(r.values())).all()
            runs.append({**cfg, "run_key": key, "mlflow_run_id": "", **r, "diverged": diverged})
    runs = pd.DataFrame(runs)
    kinds = [REGRESSION_COLUMNS] if mse else []
    kinds += [CLASSIFICATION_COLUMNS] if "blobs3" in set(runs["dataset"]) else []
    columns = [*CONFIG_KEYS, "run_key", "mlflow_run_id", *itertools.chain(*kinds), "diverged"]
    runs = runs.reindex(columns=columns)
    hist = pd.DataFrame(hist)
    return SweepData(runs, hist, diag, {**axes, "seed": list(SEEDS)})


def bn_accuracy(cfg):
    """BN before the activation adds 5 percentage points, 2 more per added hidden layer."""
    gain = 0.05 + 0.02 * (cfg["depth"] - 1) if cfg["bn"] == "pre" else 0.0
    return 0.7 + gain


def cla_sweep():
    return make_sweep({"bn": ["none", "pre"], "depth": [1, 2, 3, 4]}, bn_accuracy)


def mixed_sweep():
    return make_sweep(
        {"dataset": ["quad2", "blobs3"], "bn": ["none", "pre"], "activation": ["sigmoid", "relu"]},
        bn_accuracy,
        mse=lambda cfg: 2.0 if cfg["bn"] == "none" else 1.0,
    )


def test_a_classification_sweep_gets_accuracy_figures_tables_and_metrics():
    rep = build_report({"cla": cla_sweep()})
    figs = list(rep.figures)
    for kind in ("test_accuracy_curves", "train_accuracy_curves", "test_ce_curves"):
        assert any(f.startswith(f"cla_{kind}") for f in figs), (kind, figs)
    assert "cla_accuracy_by_depth.png" in figs
    assert not any("_test_curves" in f or "train_curves" in f for f in figs), figs  # no MSE
    s = rep.summary
    assert not any("mse" in c for c in s.columns)
    assert s["final_test_accuracy_mean"].between(0.6, 0.9).all()
    assert (s["final_test_accuracy_ci_low"] < s["final_test_accuracy_mean"]).all()
    assert s["final_test_ce_geomean"].notna().all() and s["n_diverged"].eq(0).all()
    assert "final test accuracy mean [95% CI]" in rep.markdown
    assert "nan" not in rep.markdown.lower() and "MSE geo-mean" not in rep.markdown
    best = rep.metrics["sweeps"]["cla"]
    best_row = s.loc[s["final_test_accuracy_median"].idxmax()]
    assert best_row["config"] == "bn=pre, depth=4"
    assert best["best_final_test_accuracy"] == pytest.approx(best_row["final_test_accuracy_median"])
    assert best["best_final_test_accuracy"] == pytest.approx(0.81, abs=0.02)
    assert "best_final_test_mse" not in best
    table = rep.plots["accuracy/cla_test_accuracy"]
    assert table["median"].between(0.3, 1).all() and table["n_finite"].eq(8).all()
    assert not any(k.endswith("_mse") for k in rep.plots)


def test_accuracy_is_drawn_on_a_linear_axis_from_0_to_1():
    rep = build_report({"cla": cla_sweep()})
    name = next(f for f in rep.figures if f.startswith("cla_test_accuracy_curves"))
    ax = rep.figures[name].axes[0]
    assert ax.get_yscale() == "linear" and ax.get_ylim() == (0.0, 1.0)
    ce = next(f for f in rep.figures if f.startswith("cla_test_ce_curves"))
    assert rep.figures[ce].axes[0].get_yscale() == "log"


def test_a_diverged_classification_run_is_counted_and_left_out():
    data = make_sweep(
        {"bn": ["none", "pre"]},
        bn_accuracy,
        diverge_at=lambda cfg: 3 if cfg["bn"] == "pre" and cfg["seed"] == 25 else None,
    )
    sw = prepare("cla", data)
    assert int(sw.runs["diverged"].sum()) == 1
    s = summary(sw)
    assert s["n_diverged"].tolist() == [0, 1]
    assert np.isfinite(s["final_test_accuracy_mean"]).all()


def test_a_mixed_sweep_has_both_kinds_each_configuration_its_own():
    rep = build_report({"mix": mixed_sweep()})
    figs = list(rep.figures)
    assert any(f.startswith("mix_test_curves") for f in figs)  # MSE of the regression runs
    assert any(f.startswith("mix_test_accuracy_curves") for f in figs)
    s = rep.summary.set_index("dataset")
    assert s.loc["quad2", "final_test_mse_geomean"].notna().all()
    assert s.loc["quad2", "final_test_accuracy_mean"].isna().all()
    assert s.loc["blobs3", "final_test_accuracy_mean"].notna().all()
    assert s.loc["blobs3", "final_test_mse_geomean"].isna().all()
    assert rep.summary["n_diverged"].eq(0).all()  # no run of either kind counts as diverged
    md = rep.markdown
    assert "final test MSE geo-mean [95% CI]" in md and "final test accuracy mean [95% CI]" in md
    assert "Classification runs: 32" in md
    m = rep.metrics["sweeps"]["mix"]
    assert {"best_final_test_mse", "best_final_test_accuracy"} <= set(m)
    # each curve table holds the configurations of its own task only
    assert rep.plots["loss/mix_test_mse"]["config"].str.startswith("dataset=quad2").all()
    assert rep.plots["accuracy/mix_test_accuracy"]["config"].str.startswith("dataset=blobs3").all()
    files = rep.files()  # every figure draws
    assert all(v for k, v in files.items() if k.startswith("figures/"))


BN = {"compare": {"bn": "pre"}, "against": {"bn": "none"}, "where": {"depth": 1}}


@pytest.mark.parametrize("metric", ["final_test_accuracy", "last2_test_accuracy"])
def test_a_planted_accuracy_gain_is_found_in_percentage_points(metric):
    r = judge(
        cla_sweep(),
        gains={**BN, "metric": metric, "expect": "higher"},
        loses={**BN, "metric": metric, "expect": "lower"},
        same={**BN, "metric": metric, "expect": "same", "margin": 0.01},
    )
    gains = r["gains"]
    assert gains.claim.metric.scale == "linear" and gains.claim.metric.higher_is_better
    assert gains.verdict == stats.SUPPORTED
    planted = 0.05 * (1 if metric.startswith("final") else (1 - math.exp(-4.5) / 2))
    assert gains.estimate == pytest.approx(planted, abs=0.01)  # a difference, not a log ratio
    assert gains.ci_low < planted < gains.ci_high
    assert "pp" in gains.effect
    assert r["loses"].verdict == stats.NOT_SUPPORTED
    assert r["same"].verdict == stats.NOT_SUPPORTED  # 5 pp is outside +-1 pp


def test_no_accuracy_effect_is_not_found_and_a_trend_is_found_only_where_planted():
    flat = make_sweep({"bn": ["none", "pre"], "depth": [1, 2, 3, 4]}, lambda cfg: 0.7)
    trend = {"kind": "trend", "compare": {"bn": "pre"}, "against": {"bn": "none"}}
    trend.update({"along": "depth", "metric": "final_test_accuracy", "expect": "higher"})
    gains = {"compare": {"bn": "pre"}, "against": {"bn": "none"}}
    gains.update({"metric": "final_test_accuracy", "expect": "higher"})
    r = judge(flat, gains=gains, trend=trend)
    assert r["gains"].verdict == stats.INCONCLUSIVE and abs(r["gains"].estimate) < 0.01
    assert r["trend"].verdict == stats.INCONCLUSIVE
    planted = judge(cla_sweep(), trend=trend)["trend"]
    assert planted.verdict == stats.SUPPORTED
    assert planted.estimate == pytest.approx(0.02, abs=0.005)  # per added hidden layer


def test_an_accuracy_margin_is_shown_in_the_units_of_its_effect():
    data = cla_sweep()
    claim = {**BN, "metric": "final_test_accuracy", "expect": "same", "margin": 0.01}
    md = build_report({"s": data}, parse(data, same=claim)).markdown
    row = next(line for line in md.splitlines() if line.startswith("| `same`"))
    assert "same, within ±1 pp" in row and " pp | " in row
