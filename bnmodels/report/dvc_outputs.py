"""What DVC compares across experiments: reports/metrics.json and reports/plots/.

`dvc exp show` makes a column of every leaf of metrics.json, so it holds the headline
numbers only: per claim its effect and verdict, the count of each verdict, and per sweep
its runs, diverged runs and the best configuration's median final test MSE (and
accuracy, for classification runs). The rest is in claims.csv and summary.csv. The
builder reads the judged claims table (claims.csv's rows), so it follows whatever claims
params.yaml holds.

`dvc plots diff` overlays the tables of reports/plots/: one per sweep and curve, in a
folder per y scale (`loss/<sweep>_test_mse`, `accuracy/<sweep>_test_accuracy`), with
the columns that dvc.yaml's `plots:` names (x `epoch`, y `median`) and the `config`
label that the templates in .dvc/plots/ draw as one line per configuration.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bnmodels.study import stats
from bnmodels.study.prepared import CLASSIFICATION, REGRESSION, PreparedSweep, label

CURVE_X, CURVE_Y, CURVE_LABEL = "epoch", "median", "config"
# curve -> (folder under reports/plots/, the task whose runs have it); dvc.yaml gives each
# folder its template: errors on a log axis, accuracy on a linear one
CURVES = {
    "train_mse": ("loss", REGRESSION),
    "test_mse": ("loss", REGRESSION),
    "train_ce": ("loss", CLASSIFICATION),
    "test_ce": ("loss", CLASSIFICATION),
    "train_accuracy": ("accuracy", CLASSIFICATION),
    "test_accuracy": ("accuracy", CLASSIFICATION),
}
VERDICTS = (stats.SUPPORTED, stats.NOT_SUPPORTED, stats.INCONCLUSIVE)
# summary column -> (metrics.json key, whether lower is better)
BEST = {
    "final_test_mse_median": ("best_final_test_mse", True),
    "final_test_accuracy_median": ("best_final_test_accuracy", False),
}


def headline_metrics(claims: pd.DataFrame, summary: pd.DataFrame) -> dict[str, Any]:
    """reports/metrics.json from the judged claims (columns id, effect, verdict) and the
    summary (one row per sweep and configuration)."""
    return {
        "claims": {
            str(row.id): {"effect": _text(row.effect), "verdict": _text(row.verdict)}
            for row in claims.itertuples()
        },
        "verdicts": {v.replace(" ", "_"): int((claims["verdict"] == v).sum()) for v in VERDICTS},
        "sweeps": {
            str(name): _sweep_headline(rows)
            for name, rows in (summary.groupby("sweep", sort=False) if len(summary) else ())
        },
    }


def _sweep_headline(rows: pd.DataFrame) -> dict[str, Any]:
    """Runs, diverged runs, and per task the median over seeds of the best configuration
    (diverged runs left out, as in the summary)."""
    out: dict[str, Any] = {
        "runs": int(rows["n_seeds"].sum()),
        "diverged": int(rows["n_diverged"].sum()),
    }
    for column, (key, lower) in BEST.items():
        if column in rows and rows[column].notna().any():
            out[key] = stats.round_sig(rows[column].min() if lower else rows[column].max())
    return out


def _text(value) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def curve_tables(sw: PreparedSweep) -> dict[str, pd.DataFrame]:
    """The sweep's curves as tables keyed by their path under reports/plots/ without
    `.csv`: per epoch and configuration (of the curve's task), the median over seeds and
    the number of runs still finite (diverged runs drop out of the median)."""
    tables = {}
    for curve, (folder, task) in CURVES.items():
        if curve not in sw.curves:
            continue
        epochs = sw.curves[curve].columns.to_numpy()
        parts = []
        for i, cfg in enumerate(sw.configs):
            if sw.config_task(i) != task:
                continue
            keys = sw.runs.loc[sw.runs["cfg"] == i, "run_key"]
            m = sw.curves[curve].loc[keys].to_numpy()  # (seeds, epochs)
            part = {
                CURVE_LABEL: label(cfg) or sw.name,
                CURVE_X: epochs,
                "n_finite": np.isfinite(m).sum(axis=0),
                CURVE_Y: stats.column_quantiles(m, [0.5])[0],
            }
            parts.append(pd.DataFrame(part))
        if parts:
            tables[f"{folder}/{sw.name}_{curve}"] = pd.concat(parts, ignore_index=True)
    return tables
