"""A sweep's results as tables: runs.csv and history.csv (SPEC 5), written and read by
one pair of functions (`write_tables`, `read_tables`) with one rule for missing values:
an empty cell, and nothing else, is NA."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bnmodels.atomic import replace_dir
from bnmodels.experiment.config import CONFIG_KEYS, NORM_KEYS
from bnmodels.training.baseline import CLASSIFICATION_BASELINES, REGRESSION_BASELINES
from bnmodels.training.result import (
    CLASSIFICATION_METRICS,
    PROBE_COLUMNS,
    REGRESSION_METRICS,
    RunResult,
)

REGRESSION_SUMMARY = (
    "final_train_mse",
    "final_test_mse",
    "best_test_mse",
    "final_test_mse_precise_bn",
    *REGRESSION_BASELINES,
)
CLASSIFICATION_SUMMARY = (
    "final_train_ce",
    "final_test_ce",
    "final_test_accuracy",
    "best_test_accuracy",
    "final_test_ce_precise_bn",
    "final_test_accuracy_precise_bn",
    *CLASSIFICATION_BASELINES,
)


def _kinds(results: Sequence[RunResult]) -> tuple[bool, bool]:
    """Whether the sweep has regression runs, and whether it has classification runs."""
    classification = ["train_ce" in r.history for r in results]
    return (not all(classification)), any(classification)


def run_columns(results: Sequence[RunResult]) -> list[str]:
    """runs.csv's columns: the summary columns of each kind of run the sweep holds."""
    regression, classification = _kinds(results)
    summary = (REGRESSION_SUMMARY if regression else ()) + (
        CLASSIFICATION_SUMMARY if classification else ()
    )
    return [
        *CONFIG_KEYS,
        *NORM_KEYS,
        "steps",
        "draw",
        "run_key",
        "mlflow_run_id",
        *summary,
        "diverged",
    ]


def runs_frame(results: Sequence[RunResult], run_ids: dict[str, str] | None = None):
    """One row per run, in the given order; `mlflow_run_id` empty when not logged, a
    summary column of the other kind (a regression run's accuracy) empty, `steps` empty
    for a run of the epochs budget, `draw` for a data set of a single draw, `groups`
    but for group normalization."""
    run_ids = run_ids or {}
    rows = [
        {
            **r.config.as_dict(),
            "run_key": r.config.run_key,
            "mlflow_run_id": run_ids.get(r.config.run_key, ""),
            **r.summary(),
            "diverged": r.diverged,
        }
        for r in results
    ]
    frame = pd.DataFrame(rows, columns=run_columns(results))
    return frame.astype({"steps": "Int64", "draw": "Int64", "groups": "Int64"})  # or empty


def history_frame(results: Sequence[RunResult]) -> pd.DataFrame:
    """Long format: run_key, epoch (1-based), the metrics (SPEC 4), then diagnostics.

    Runs of different depths have different per-layer columns, and regression and
    classification runs different metrics; a column a run does not have is NaN.
    """
    frames = []
    for r in results:
        n = len(next(iter(r.history.values())))
        frames.append(
            pd.DataFrame({"run_key": r.config.run_key, "epoch": np.arange(1, n + 1), **r.history})
        )
    df = pd.concat(frames, ignore_index=True)
    per_layer = ("weight_std_l", "grad_std_l", "weight_norm_l", "grad_ratio_l")
    layer_cols = sorted(
        (c for c in df.columns if c.startswith(per_layer)),
        key=lambda c: (c.split("_l")[0], int(c.split("_l")[1])),
    )
    regression, classification = _kinds(results)
    metrics = (REGRESSION_METRICS if regression else ()) + (
        CLASSIFICATION_METRICS if classification else ()
    )
    probes = [c for c in PROBE_COLUMNS if c in df.columns]
    return df[["run_key", "epoch", "step", *metrics, *layer_cols, "dead_fraction", *probes]]


TABLES = ("runs.csv", "history.csv", "diagnostics.json")


def diagnostics_json(results: Sequence[RunResult]) -> str:
    """Each run's end-of-training diagnostics (BN running statistics, last gradients)."""
    return json.dumps({r.config.run_key: r.final for r in results}, sort_keys=True) + "\n"


def sweep_texts(results: Sequence[RunResult], history=None) -> dict[str, str]:
    """{file name: text} of the tables that do not name MLflow runs (history.csv,
    diagnostics.json): written once, logged on the parent run and into runs/ alike (the
    largest history.csv, 20 MB, takes about a second to write); `history` if built."""
    history = history_frame(results) if history is None else history
    return {
        "history.csv": history.to_csv(index=False),  # NaN as an empty cell
        "diagnostics.json": diagnostics_json(results),
    }


def table_texts(
    results: Sequence[RunResult], run_ids: dict[str, str] | None = None, history=None, texts=None
) -> dict[str, str]:
    """{file name: text} of a sweep's tables; `history` if already built, `texts` if
    `sweep_texts` already wrote."""
    return {
        "runs.csv": runs_frame(results, run_ids).to_csv(index=False),
        **(texts or sweep_texts(results, history)),
    }


def write_tables(out, results, run_ids=None, history=None, texts=None) -> None:
    """runs.csv, history.csv and diagnostics.json into folder `out`, replacing it all at
    once: an interrupted write leaves the previous tables as they were."""
    replace_dir(out, table_texts(results, run_ids, history, texts))


def read_tables(folder) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, history) of a sweep folder written by `write_tables`: an empty cell is NA,
    any other text a value (a data set named "NA" or "null" stays a name)."""
    folder = Path(folder)
    return tuple(
        pd.read_csv(folder / name, keep_default_na=False, na_values=[""])
        for name in ("runs.csv", "history.csv")
    )
