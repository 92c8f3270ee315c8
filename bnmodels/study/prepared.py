"""One sweep's result tables, prepared for the report: configurations, per-run numbers,
per-epoch curves, and runs paired by seed.

Built once by `prepare(name, data)` from runs.csv, history.csv and diagnostics.json as
read; the figures, the summary table and the claims all read the same `PreparedSweep`.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from bnmodels import columns
from bnmodels.experiment.config import CONFIG_KEYS, NORM_KEYS
from bnmodels.study import stats
from bnmodels.study.convergence import run_states, state_words
from bnmodels.study.metrics import epochs_to

# a configuration without seed; the normalization keys too (layer, group, rms: `bn` none)
GROUP_KEYS = tuple(k for k in (*CONFIG_KEYS, *NORM_KEYS) if k != "seed")
THRESHOLD_FRACTION = (
    0.5  # convergence threshold: this fraction of the constant predictor's train MSE
)
REGRESSION, CLASSIFICATION = "regression", "classification"  # a run's task (runs["task"])
PRIMARY = {REGRESSION: "final_test_mse", CLASSIFICATION: "final_test_accuracy"}
CURVE_METRICS = (*columns.METRICS, columns.DEAD_FRACTION, *columns.PROBES)  # probes: true


@dataclass(frozen=True)
class SweepData:
    """One sweep's outputs: runs.csv and history.csv as read, diagnostics.json as loaded.

    `axes` maps each key given as a list in params.yaml to its values (seed may be among
    them; it is never a grouping key); None infers them from the runs.
    """

    runs: pd.DataFrame
    history: pd.DataFrame
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    axes: Mapping[str, Sequence] | None = None


def show(v) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):g}"
    return str(v)


def label(cfg: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
    keys = list(cfg) if keys is None else keys
    return ", ".join(f"{k}={show(cfg[k])}" for k in keys)


def nanmean(row) -> float:
    f = stats.finite(row)
    return float(f.mean()) if f.size else math.nan


def select(runs: pd.DataFrame, where: Mapping[str, Any]) -> pd.Series:
    """Boolean mask of the runs whose keys equal the given values (a tuple or list: any
    of them)."""
    mask = pd.Series(True, index=runs.index)
    for k, v in where.items():
        values = list(v) if isinstance(v, tuple | list) else [v]
        col = runs[k]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            mask &= col.astype(float).isin([float(x) for x in values])
        else:
            mask &= col.astype(str).isin([str(x) for x in values])
    return mask


@dataclass(frozen=True)
class PreparedSweep:
    name: str
    runs: pd.DataFrame  # one row per run, plus cfg, epochs_to_threshold, grad_spread, ...
    history: pd.DataFrame  # as read: run_key, epoch, then one column per metric
    axes: dict[str, list]  # varying keys (seed excluded), values in given order
    configs: list[dict]  # axis values of each configuration present, product order
    fixed: dict[str, Any]  # keys that do not vary
    seeds: list
    epochs: int
    threshold: float  # the report's convergence threshold on the train MSE
    curves: dict[str, pd.DataFrame]  # metric -> (runs, epochs) indexed by run_key
    grad_scale: pd.DataFrame  # (runs, Linear layers): geometric mean over epochs, log10
    diagnostics: Mapping[str, Any]

    def select(self, **where) -> pd.Series:
        return select(self.runs, where)

    @property
    def budget(self) -> str:
        """The training budget in words: "150 epochs", or "3500 SGD steps" (a steps budget,
        whose runs make different numbers of epochs)."""
        if "steps" in self.runs and self.runs["steps"].notna().any():
            return f"{int(self.runs['steps'].max())} SGD steps"
        return f"{self.epochs} epochs"

    @property
    def tasks(self) -> list[str]:
        """The tasks of its runs: regression first, then classification."""
        present = set(self.runs["task"])
        return [t for t in (REGRESSION, CLASSIFICATION) if t in present]

    def config_task(self, i: int) -> str:
        """The task of configuration i (a data set is of one kind, so all its runs are)."""
        return str(self.runs.loc[self.runs["cfg"] == i, "task"].iloc[0])

    def has(self, key: str, value) -> bool:
        """Whether some run has `key == value` (as an axis value or a fixed one)."""
        return bool(self.select(**{key: value}).any())

    def curve(self, column: str) -> np.ndarray:
        """(runs, epochs) of a history column in run order; all NaN when it is absent."""
        if column in self.curves:
            return self.curves[column].to_numpy(float)
        keys = self.runs["run_key"]
        if column not in self.history.columns:
            return np.full((len(keys), self.epochs), np.nan)
        m = self.history.pivot(index="run_key", columns="epoch", values=column)
        return m.reindex(index=keys, columns=sorted(m.columns)).to_numpy(float)


def _diverged_flags(col: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(col):
        return col.fillna(False).astype(bool)
    return col.astype(str).str.strip().str.lower().isin(("true", "1", "1.0"))


def _norm(v, numeric: bool):
    return float(v) if numeric else str(v)


def _cast(v):
    return v.item() if isinstance(v, np.generic) else v


REQUIRED = {  # runs.csv's columns the report needs, per task a sweep holds
    REGRESSION: ("final_test_mse", "best_test_mse"),
    CLASSIFICATION: ("final_test_accuracy", "best_test_accuracy", "final_test_ce"),
}
SUMMARY_COLUMNS = {  # runs.csv's numeric columns of each task
    REGRESSION: ("final_train_mse", "final_test_mse", "best_test_mse"),
    CLASSIFICATION: (
        "final_train_ce",
        "final_test_ce",
        "final_test_accuracy",
        "best_test_accuracy",
    ),
}


def _tasks(runs: pd.DataFrame) -> pd.Series:
    """Each run's task. runs.csv has the summary columns of each kind a sweep holds; in a
    mixed sweep a data set is classification when any of its runs has a final accuracy."""
    if "final_test_accuracy" not in runs.columns:
        return pd.Series(REGRESSION, index=runs.index)
    if "final_test_mse" not in runs.columns:
        return pd.Series(CLASSIFICATION, index=runs.index)
    accurate = runs["dataset"][np.isfinite(runs["final_test_accuracy"])].astype(str)
    cla = runs["dataset"].astype(str).isin(set(accurate))
    return pd.Series(np.where(cla, CLASSIFICATION, REGRESSION), index=runs.index)


def _read_runs(name: str, data: SweepData) -> pd.DataFrame:
    runs = data.runs.copy().reset_index(drop=True)
    kinds = [t for t in (REGRESSION, CLASSIFICATION) if PRIMARY[t] in runs.columns]
    needed = [*CONFIG_KEYS, "run_key", *(c for t in kinds for c in REQUIRED[t]), "diverged"]
    missing = [c for c in needed if c not in runs.columns]
    if not kinds:
        missing.append(" or ".join(PRIMARY.values()))
    if missing:
        raise ValueError(f"sweep {name!r}: runs table lacks columns {missing}")
    if runs["run_key"].duplicated().any():
        raise ValueError(f"sweep {name!r}: duplicate run_key in runs table")
    for c in (*SUMMARY_COLUMNS[REGRESSION], *SUMMARY_COLUMNS[CLASSIFICATION]):
        if c in runs.columns:
            runs[c] = pd.to_numeric(runs[c], errors="coerce").astype(float)
    runs["task"] = _tasks(runs)
    # A run without a finite final test MSE (accuracy, for classification) counts as
    # diverged (or missing) everywhere.
    final = pd.Series(np.nan, index=runs.index)
    for task in kinds:
        final = final.where(runs["task"] != task, runs[PRIMARY[task]])
    runs["diverged"] = _diverged_flags(runs["diverged"]) | ~np.isfinite(final)
    return runs


def _group_keys(runs: pd.DataFrame) -> tuple[str, ...]:
    """The keys that tell configurations apart: with a steps budget, `steps` instead of
    the `epochs` it implies (which follow the batch size)."""
    keys = tuple(k for k in GROUP_KEYS if k in runs)  # older tables lack the norm columns
    if "steps" in runs and runs["steps"].notna().any():
        return tuple("steps" if k == "epochs" else k for k in keys)
    return keys


def _implied(runs: pd.DataFrame, axes: Sequence[str], k: str) -> bool:
    """Whether normalization key k is a function of the axes chosen so far (`bn: pre`
    implies `norm: batch`): not an axis of its own."""
    if k not in ("bn", *NORM_KEYS) or not axes:
        return False
    return bool((runs.groupby(list(axes), dropna=False)[k].nunique(dropna=False) <= 1).all())


def _axes(runs: pd.DataFrame, given: Mapping[str, Sequence]) -> dict[str, list]:
    """The given axes in their order, plus any key that varies in the runs anyway (so
    different configurations are never pooled), with values not listed appended."""
    axes: dict[str, list] = {}
    keys = _group_keys(runs)
    for k in [*given, *keys]:
        if k == "seed" or k in axes or k not in keys:
            continue
        numeric = pd.api.types.is_numeric_dtype(runs[k]) and runs[k].dtype != bool
        present = sorted({_norm(v, numeric) for v in runs[k]})
        order = [_norm(v, numeric) for v in given.get(k, [])]
        values = [v for v in dict.fromkeys(order) if v in present]
        values += [v for v in present if v not in values]
        if len(values) > 1 and not _implied(runs, list(axes), k):
            axes[k] = values
    return axes


def _configs(runs: pd.DataFrame, axes: dict[str, list]) -> tuple[list[dict], np.ndarray]:
    """Configurations present, in product order, and each run's configuration index."""
    configs, index = [], np.full(len(runs), -1)
    for values in itertools.product(*axes.values()):
        cfg = dict(zip(axes, values, strict=True))
        mask = select(runs, cfg).to_numpy()
        if mask.any():
            index[mask] = len(configs)
            configs.append(cfg)
    return configs, index


def _grad_scale(hist: pd.DataFrame, keys: pd.Series) -> pd.DataFrame:
    """Per run and Linear layer: the geometric mean over epochs of each epoch's last-step
    ||grad W|| / ||W||, in log10 units. Scale-invariant: for weights feeding a BN layer the
    raw gradient shrinks as 1/||W|| while the effective step does not, so raw gradient
    sizes would compare weight norms, not learning (issue 11). Histories without the ratio
    (an older version) fall back to the gradient std."""
    prefix = (
        "grad_ratio_l" if any(c.startswith("grad_ratio_l") for c in hist.columns) else "grad_std_l"
    )
    layer_cols = sorted(
        (c for c in hist.columns if re.fullmatch(prefix + r"\d+", c)),
        key=lambda c: int(c[len(prefix) :]),
    )
    scale = {}
    for c in layer_cols:
        m = hist.pivot(index="run_key", columns="epoch", values=c).reindex(index=keys)
        logs = np.log10(np.where(m.to_numpy(float) > 0, m.to_numpy(float), np.nan))
        scale[int(c[len(prefix) :])] = [nanmean(r) for r in logs]
    return pd.DataFrame(scale, index=keys.to_numpy())


def prepare(name: str, data: SweepData) -> PreparedSweep:
    runs = _read_runs(name, data)
    axes = _axes(runs, dict(data.axes or {}))
    configs, runs["cfg"] = _configs(runs, axes)
    hist, keys = data.history, runs["run_key"]
    curves = {}
    for metric in CURVE_METRICS:
        if metric in hist.columns:
            m = hist.pivot(index="run_key", columns="epoch", values=metric)
            curves[metric] = m.reindex(index=keys, columns=sorted(m.columns)).astype(float)
    epochs = int(runs["epochs"].max()) if len(runs) else 0
    threshold = math.nan
    runs["epochs_to_threshold"] = math.nan
    if "train_mse" in curves and curves["train_mse"].shape[1]:
        epochs = max(epochs, int(curves["train_mse"].columns.max()))
        if "baseline_train_mse" in runs:  # per data set: R^2 = 1 - THRESHOLD_FRACTION on train
            per_run = THRESHOLD_FRACTION * runs["baseline_train_mse"].to_numpy(float)
        else:  # runs.csv of an older version: the sweep's median first-epoch train MSE
            first = stats.finite(curves["train_mse"].iloc[:, 0])
            per_run = np.full(len(runs), THRESHOLD_FRACTION * float(np.median(first)))
        threshold = float(np.nanmedian(per_run)) if np.isfinite(per_run).any() else math.nan
        reached = epochs_to(curves["train_mse"].to_numpy(), per_run[:, None])
        runs["epochs_to_threshold"] = np.where(np.isinf(reached), np.nan, reached)
    runs[["last_fifth_change", "r2", "state"]] = run_states(runs, curves)
    runs["dead_final"] = math.nan
    if "dead_fraction" in curves:
        runs["dead_final"] = curves["dead_fraction"].to_numpy()[:, -1]
    grad_scale = _grad_scale(hist, keys)
    # Per run, over its own Linear layers (input first, output last), in decades.
    finite_rows = [stats.finite(row) for row in grad_scale.to_numpy()]
    runs["grad_spread"] = [float(np.ptp(v)) if v.size >= 2 else math.nan for v in finite_rows]
    runs["grad_tilt"] = [float(v[0] - v[-1]) if v.size >= 2 else math.nan for v in finite_rows]
    if "final_test_mse_precise_bn" in runs.columns:  # running over precise BN statistics
        runs["precise_bn_gap"] = runs["final_test_mse"] / runs["final_test_mse_precise_bn"]
    else:
        runs["precise_bn_gap"] = math.nan
    return PreparedSweep(
        name=name,
        runs=runs,
        history=hist,
        axes=axes,
        configs=configs,
        fixed={k: _cast(runs[k].iloc[0]) for k in _group_keys(runs) if k not in axes and len(runs)},
        seeds=sorted(runs["seed"].unique().tolist()),
        epochs=epochs,
        threshold=threshold,
        curves=curves,
        grad_scale=grad_scale,
        diagnostics=data.diagnostics or {},
    )


def only(sw: PreparedSweep, task: str) -> PreparedSweep:
    """The sweep restricted to the runs of one task (itself when it holds no other): the
    axes and configurations of those runs, for the task's figures."""
    if sw.tasks == [task]:
        return sw
    runs = sw.runs[sw.runs["task"] == task].copy()
    axes = _axes(runs, sw.axes)
    configs, runs["cfg"] = _configs(runs, axes)
    keys = runs["run_key"]
    return replace(
        sw,
        runs=runs,
        axes=axes,
        configs=configs,
        fixed={**sw.fixed, **{k: _cast(runs[k].iloc[0]) for k in sw.axes if k not in axes}},
        curves={m: c.loc[keys] for m, c in sw.curves.items()},
        grad_scale=sw.grad_scale.loc[keys.to_numpy()],
    )


def seed_diffs(sw: PreparedSweep, value: pd.Series, where: Mapping, a: Mapping, b: Mapping):
    """Per seed, `value(b) - value(a)` averaged over the cells of the remaining axes.

    Runs are paired by seed (and cell); a NaN difference (diverged run) is dropped.
    Returns (per-seed Series, number of dropped cell pairs).
    """
    cells = [k for k in sw.axes if k not in {**where, **a, **b}]
    ra = sw.runs[sw.select(**where, **a)]
    rb = sw.runs[sw.select(**where, **b)]
    cols = ["seed", *cells, "run_key"]
    m = ra[cols].merge(rb[cols], on=["seed", *cells], suffixes=("_a", "_b"))
    m["diff"] = value.reindex(m["run_key_b"]).to_numpy() - value.reindex(m["run_key_a"]).to_numpy()
    dropped = int((~np.isfinite(m["diff"])).sum())
    per_seed = m.groupby("seed", sort=True)["diff"].agg(nanmean)
    return per_seed, dropped


def log_final(sw: PreparedSweep) -> pd.Series:
    return pd.Series(stats.log_mse(sw.runs["final_test_mse"]), index=sw.runs["run_key"].values)


def _regression_columns(sw: PreparedSweep, ok: pd.DataFrame) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for metric in ("final_test_mse", "best_test_mse"):
        d = stats.describe(ok[metric])
        for s in ("mean", "median", "geomean", "ci_low", "ci_high"):
            row[f"{metric}_{s}"] = d[s]
    if "final_train_mse" in ok:
        row["final_train_mse_median"] = stats.quantile(ok["final_train_mse"], 0.5)
    row["r2_median"] = stats.quantile(ok["r2"], 0.5)
    # Not reached counts as after the last epoch: only the median (an order
    # statistic, exact while fewer than half are censored) is reported.
    e = ok["epochs_to_threshold"].fillna(sw.epochs + 1.0)
    row.update(
        {
            "threshold": sw.threshold,
            "n_reached": int(np.isfinite(ok["epochs_to_threshold"]).sum()),
            "epochs_to_threshold_median": stats.quantile(e, 0.5),
        }
    )
    return row


def _classification_columns(ok: pd.DataFrame) -> dict[str, Any]:
    """Accuracy as it is (mean, median, t-interval of the mean); cross-entropy as MSE is
    (geometric mean, median)."""
    acc = stats.finite(ok["final_test_accuracy"])
    mean, lo, hi, _ = stats.t_interval(acc)
    row = {
        "final_test_accuracy_mean": mean,
        "final_test_accuracy_median": stats.quantile(acc, 0.5),
        "final_test_accuracy_ci_low": lo,
        "final_test_accuracy_ci_high": hi,
        "best_test_accuracy_mean": nanmean(ok["best_test_accuracy"]),
    }
    d = stats.describe(ok["final_test_ce"])
    row.update({"final_test_ce_geomean": d["geomean"], "final_test_ce_median": d["median"]})
    if "final_train_ce" in ok:
        row["final_train_ce_median"] = stats.quantile(ok["final_train_ce"], 0.5)
    return row


BASELINE_COLUMNS = ("baseline_test_mse", "baseline_test_accuracy")  # runs.csv, per data set


def summary(sw: PreparedSweep) -> pd.DataFrame:
    """One row per configuration: counts, final and best test MSE and convergence (for
    classification: test accuracy and cross-entropy), dead units, gradient spread.

    A sweep has the columns of each task it holds (regression first); a configuration
    leaves the other task's empty.
    """
    rows = []
    for i, cfg in enumerate(sw.configs):
        r = sw.runs[sw.runs["cfg"] == i]
        ok = r[~r["diverged"]]
        first = r.iloc[0]
        row: dict[str, Any] = {"sweep": sw.name, "config": label(cfg) or sw.name}
        row.update({k: _cast(first[k]) for k in GROUP_KEYS if k in first})
        row.update({"n_seeds": len(r), "n_diverged": int(r["diverged"].sum())})
        for task in sw.tasks:
            cols = (
                _regression_columns(sw, ok) if task == REGRESSION else _classification_columns(ok)
            )
            mine = sw.config_task(i) == task
            row.update({k: v if mine else math.nan for k, v in cols.items()})
        row.update(
            {
                "dead_fraction_final_mean": nanmean(ok["dead_final"]),
                "grad_spread_decades_mean": nanmean(ok["grad_spread"]),
                "last_fifth_change_median": stats.quantile(ok["last_fifth_change"], 0.5),
                "state": state_words(r["state"]),
            }
        )
        for col in BASELINE_COLUMNS:
            if col in r:
                row[col] = stats.quantile(r[col], 0.5)
        rows.append(row)
    return pd.DataFrame(rows)
