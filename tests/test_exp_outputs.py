"""What DVC compares across experiments: metrics.json stays small and follows the claims
table, the curve tables have the columns dvc.yaml's plots name, and those plots point to
what the aggregate stage writes, drawn by templates that exist."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from configs import RUN_DEFAULTS

from bnmodels.experiment.config import CONFIG_KEYS
from bnmodels.report.build import build_report
from bnmodels.report.dvc_outputs import (
    CURVE_LABEL,
    CURVE_X,
    CURVE_Y,
    curve_tables,
    headline_metrics,
)
from bnmodels.study.prepared import SweepData, prepare, summary

ROOT = Path(__file__).resolve().parents[1]
DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
SEEDS = (24, 25, 26)
EPOCHS = 4
DEFAULTS = {**RUN_DEFAULTS, "epochs": EPOCHS}


def mixed_sweep() -> SweepData:
    """Regression (quad2) and classification (blobs3) runs, BN none or pre; with BN the
    test MSE halves and the accuracy gains 10 points; seed 26 of quad2 without BN diverges
    at epoch 3."""
    runs, hist = [], []
    for dataset in ("quad2", "blobs3"):
        for bn in ("none", "pre"):
            for seed in SEEDS:
                cfg = {**DEFAULTS, "dataset": dataset, "bn": bn, "seed": seed}
                key = "-".join(str(cfg[k]) for k in CONFIG_KEYS)
                e = np.arange(1, EPOCHS + 1, dtype=float)
                noise = 1 + 0.01 * (seed - 25)
                if dataset == "quad2":
                    test = (1.0 if bn == "pre" else 2.0) * noise * (1 + np.exp(-e))
                    if bn == "none" and seed == 26:
                        test[2:] = np.nan
                    curves = {"train_mse": 0.9 * test, "test_mse": test}
                    row = {"final_test_mse": test[-1], "best_test_mse": np.nanmin(test)}
                else:
                    acc = (0.8 if bn == "pre" else 0.7) * noise * (1 - 0.5 * np.exp(-e))
                    ce = 0.5 / noise * (1 + np.exp(-e))
                    curves = {
                        "train_ce": ce,
                        "test_ce": ce,
                        "train_accuracy": acc,
                        "test_accuracy": acc,
                    }
                    row = {
                        "final_test_accuracy": acc[-1],
                        "best_test_accuracy": acc.max(),
                        "final_test_ce": ce[-1],
                    }
                runs.append({**cfg, "run_key": key, **row, "diverged": False})
                for i, epoch in enumerate(e):
                    hist.append(
                        {
                            "run_key": key,
                            "epoch": int(epoch),
                            **{k: v[i] for k, v in curves.items()},
                        }
                    )
    return SweepData(pd.DataFrame(runs), pd.DataFrame(hist), {}, None)


def claims_table(ids: list[str]) -> pd.DataFrame:
    """A judged claims table as reports/claims.csv has it (only the columns that matter
    here filled), one row per id."""
    verdicts = ["supported", "not supported", "inconclusive"]
    return pd.DataFrame(
        {
            "id": ids,
            "kind": "pair",
            "estimate": [0.1 * i for i in range(len(ids))],
            "p_holm": 0.01,
            "verdict": [verdicts[i % 3] for i in range(len(ids))],
            "effect": [f"-{10 + i}% [-20%, -5%]" for i in range(len(ids))],
            "says": "a long sentence that is not a headline number " * 3,
        }
    )


def leaves(tree) -> list:
    return [x for v in tree.values() for x in leaves(v)] if isinstance(tree, dict) else [tree]


@pytest.fixture(scope="module")
def sweep():
    return prepare("mix", mixed_sweep())


@pytest.mark.parametrize("n_claims", [0, 1, 7])
def test_metrics_json_holds_each_judged_claims_effect_and_verdict_and_little_else(sweep, n_claims):
    ids = [f"claim_{i}" if i % 2 else f"new-claim-{i}" for i in range(n_claims)]
    table = claims_table(ids)
    metrics = headline_metrics(table, summary(sweep))
    assert list(metrics["claims"]) == ids  # whatever the claims are, in the table's order
    for row in table.itertuples():
        assert metrics["claims"][row.id] == {"effect": row.effect, "verdict": row.verdict}
    assert metrics["verdicts"] == {
        "supported": (n_claims + 2) // 3,
        "not_supported": (n_claims + 1) // 3,
        "inconclusive": n_claims // 3,
    }
    # small: 2 leaves a claim, 3 verdict counts, at most 5 a sweep
    assert len(leaves(metrics)) <= 2 * n_claims + 3 + 5
    json.dumps(metrics, allow_nan=False)


def test_a_sweeps_headline_is_its_runs_its_diverged_and_its_best_configurations_median(sweep):
    s = summary(sweep).set_index("config")
    m = headline_metrics(claims_table([]), summary(sweep))["sweeps"]["mix"]
    assert m["runs"] == 4 * len(SEEDS) and m["diverged"] == 1
    # lowest median final test MSE, highest median final test accuracy: BN's configurations
    assert m["best_final_test_mse"] == pytest.approx(
        s.loc["dataset=quad2, bn=pre", "final_test_mse_median"], rel=1e-5
    )
    assert m["best_final_test_accuracy"] == pytest.approx(
        s.loc["dataset=blobs3, bn=pre", "final_test_accuracy_median"], rel=1e-5
    )
    assert set(m) == {"runs", "diverged", "best_final_test_mse", "best_final_test_accuracy"}


def data_series_plots() -> dict[str, dict]:
    """dvc.yaml's top-level plots that are tables (with x and y), by folder."""
    plots = {}
    for entry in DVC_YAML["plots"]:
        if isinstance(entry, dict):
            (path, props), *_ = entry.items()
            if props and "x" in props:
                plots[path] = props
    return plots


def test_curve_tables_have_the_declared_x_and_y_and_one_line_per_configuration(sweep):
    tables = curve_tables(sweep)
    assert set(tables) == {
        "loss/mix_train_mse",
        "loss/mix_test_mse",
        "loss/mix_train_ce",
        "loss/mix_test_ce",
        "accuracy/mix_train_accuracy",
        "accuracy/mix_test_accuracy",
    }
    declared = data_series_plots()
    for name, table in tables.items():
        props = declared[f"reports/plots/{name.split('/')[0]}"]
        assert {props["x"], props["y"], CURVE_LABEL} <= set(table.columns), name
        # one label per configuration of the curve's task, each with every epoch once
        assert table[CURVE_LABEL].nunique() == 2, name
        assert not table.duplicated([CURVE_LABEL, props["x"]]).any(), name
        assert table.groupby(CURVE_LABEL)[props["x"]].apply(list).map(len).eq(EPOCHS).all()
    mse = tables["loss/mix_test_mse"].set_index([CURVE_LABEL, CURVE_X])
    assert set(mse.index.get_level_values(0)) == {"dataset=quad2, bn=none", "dataset=quad2, bn=pre"}
    # the median over seeds; the diverged run drops out of it and of n_finite
    none = mse.loc["dataset=quad2, bn=none"]
    assert none["n_finite"].tolist() == [3, 3, 2, 2]
    assert none.loc[1, CURVE_Y] == pytest.approx(2.0 * (1 + math.exp(-1)))
    assert none.loc[4, CURVE_Y] == pytest.approx(2.0 * 0.995 * (1 + math.exp(-4)))


def test_dvc_yaml_plots_and_metrics_point_to_what_the_aggregate_stage_writes(sweep):
    aggregate = DVC_YAML["stages"]["aggregate"]
    outs = {next(iter(o)) if isinstance(o, dict) else o for o in aggregate["outs"]}
    rep = build_report({"mix": mixed_sweep()})
    drawn = dict.fromkeys(rep.figures, b"PNG")  # the names matter here, not the pictures
    written = {f"reports/{k}" for k in rep.files(figures=drawn)}
    for metrics in DVC_YAML["metrics"]:
        assert metrics in outs and metrics in written
    for entry in DVC_YAML["plots"]:
        path = entry if isinstance(entry, str) else next(iter(entry))
        assert any(path == o or path.startswith(o + "/") for o in outs), path
        assert any(f.startswith(path + "/") for f in written), path  # the folder has files
    # every curve table lies in a folder that dvc.yaml declares
    declared = data_series_plots()
    plot_files = [f for f in written if f.startswith("reports/plots/")]
    assert plot_files and all(f.rsplit("/", 1)[0] in declared for f in plot_files)


@pytest.mark.parametrize("folder", sorted(data_series_plots()))
def test_each_plot_template_draws_a_line_per_configuration_and_a_dash_per_experiment(folder):
    template = data_series_plots()[folder]["template"]
    spec = json.loads((ROOT / ".dvc" / "plots" / f"{template}.json").read_text())
    assert spec["data"] == {"values": "<DVC_METRIC_DATA>"}
    enc = spec["encoding"]
    assert enc["x"]["field"] == "<DVC_METRIC_X>" and enc["y"]["field"] == "<DVC_METRIC_Y>"
    assert enc["color"]["field"] == CURVE_LABEL
    assert enc["strokeDash"]["field"] == "rev"  # DVC's field naming the experiment
    log = enc["y"]["scale"].get("type") == "log"
    assert log == (folder.endswith("/loss"))  # errors on a log axis, accuracy linear
