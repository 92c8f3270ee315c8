"""A sweep's results as tables: runs.csv and history.csv (SPEC 5)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bnmodels.config import CONFIG_KEYS
from bnmodels.run import RunResult

RUN_COLUMNS = [
    *CONFIG_KEYS,
    "run_key",
    "mlflow_run_id",
    "final_train_mse",
    "final_test_mse",
    "best_test_mse",
    "diverged",
]


def runs_frame(results: Sequence[RunResult], run_ids: dict[str, str] | None = None):
    """One row per run, in the given order; `mlflow_run_id` empty when not logged."""
    run_ids = run_ids or {}
    rows = [
        {
            **r.config.as_dict(),
            "run_key": r.config.run_key,
            "mlflow_run_id": run_ids.get(r.config.run_key, ""),
            "final_train_mse": r.final_train_mse,
            "final_test_mse": r.final_test_mse,
            "best_test_mse": r.best_test_mse,
            "diverged": r.diverged,
        }
        for r in results
    ]
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def history_frame(results: Sequence[RunResult]) -> pd.DataFrame:
    """Long format: run_key, epoch (1-based), train_mse, test_mse, then diagnostics.

    Runs of different depths have different per-layer columns; a missing one is NaN.
    """
    frames = []
    for r in results:
        n = len(r.history["train_mse"])
        frames.append(
            pd.DataFrame({"run_key": r.config.run_key, "epoch": np.arange(1, n + 1), **r.history})
        )
    df = pd.concat(frames, ignore_index=True)
    layer_cols = sorted(
        (c for c in df.columns if c.startswith(("weight_std_l", "grad_std_l"))),
        key=lambda c: (c.split("_l")[0], int(c.split("_l")[1])),
    )
    return df[["run_key", "epoch", "train_mse", "test_mse", *layer_cols, "dead_fraction"]]
