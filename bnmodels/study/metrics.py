"""The metrics a claim can name: how each is read from a sweep's runs, and on what scale.

A metric is one number per run. Its name says which history column and how the epochs
are reduced:

- `final_<column>`: the value after the last epoch (a diverged run has none: NaN);
- `last<k>_<column>`: the mean of the last k epochs (curves jump between epochs);
- `best_<column>`: the best value over the epochs (lowest, or highest where higher is
  better); the epoch is picked on the column itself, so on a test column it is an
  optimistic number, selected on the test set (the report's tables no longer show it);
- `mean_<column>`: the mean over all epochs ("over the course of training");
- `epochs_to_<column>`: the first epoch at which the column reaches the claim's
  `threshold`; a run that never does is *censored* (stored as +inf, never averaged);
- `grad_spread`: decades between the largest and smallest per-layer ||grad W|| / ||W||
  (each the geometric mean over epochs; scale-invariant), the Glorot condition of the
  notes; `grad_tilt`: the first hidden layer's over the output layer's, in decades
  (> 0: the input side learns faster; its sign is the direction of the imbalance);
- `precise_bn_gap`: final test MSE with the running BN statistics over the test MSE of
  the same network with precise statistics (runs.csv; > 1: running statistics cost).

Columns are registered in COLUMNS (and LAYER_COLUMNS for per-layer ones) with their
scale: error-like, positive columns spanning orders of magnitude are compared on the
log scale; fractions and bounded scores (accuracy: higher is better) on their own.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

LOG, LINEAR, ORDER = "log", "linear", "order"  # scales on which effects are computed


@dataclass(frozen=True)
class Column:
    """A per-epoch history column as a claim sees it."""

    describe: str  # in words, for the report
    scale: str  # LOG or LINEAR
    higher_is_better: bool = False
    unit: str = ""  # of a LINEAR effect, as shown
    shown_scale: float = 1.0  # a LINEAR effect is shown times this (fractions as pp)


COLUMNS = {
    "train_mse": Column("train MSE", LOG),
    "test_mse": Column("test MSE", LOG),
    "train_ce": Column("train cross-entropy", LOG),
    "test_ce": Column("test cross-entropy", LOG),
    "train_accuracy": Column("train accuracy", LINEAR, True, unit="pp", shown_scale=100.0),
    "test_accuracy": Column("test accuracy", LINEAR, True, unit="pp", shown_scale=100.0),
    "dead_fraction": Column("dead-unit fraction", LINEAR, unit="pp", shown_scale=100.0),
    "probe_loss_range": Column("loss variation along the gradient (probe)", LOG),
    "probe_grad_change": Column("gradient change along the gradient (probe)", LOG),
    "probe_beta": Column("effective beta-smoothness (probe)", LOG),
}
LAYER_COLUMNS = {  # per Linear layer i (1 = first hidden, depth + 1 = output)
    "weight_std_l": Column("weight std of layer {i}", LOG),
    "grad_std_l": Column("weight-gradient std of layer {i}", LOG),
    "weight_norm_l": Column("weight norm of layer {i}", LOG),
    "grad_ratio_l": Column("||grad W|| / ||W|| of layer {i}", LOG),
}
REDUCERS = ("final", "last", "best", "mean", "epochs_to")
DERIVED = {
    "grad_spread": Column("spread of ||grad W|| / ||W|| across layers", LINEAR, unit="decades"),
    "grad_tilt": Column("input-over-output ||grad W|| / ||W||", LINEAR, unit="decades"),
    "precise_bn_gap": Column("test MSE with running over precise BN statistics", LOG),
}
GRAMMAR = (
    "final_<column>, last<k>_<column>, best_<column>, mean_<column>, epochs_to_<column>, "
    "grad_spread, grad_tilt or precise_bn_gap, "
    "where <column> is one of " + ", ".join([*COLUMNS, *(f"{p}<i>" for p in LAYER_COLUMNS)])
)
_NAME = re.compile(r"^(final|best|mean|epochs_to|last([1-9][0-9]*))_(.+)$")


@dataclass(frozen=True)
class Metric:
    """A parsed metric name: which column, reduced how, compared on which scale."""

    name: str
    reducer: str  # one of REDUCERS, or "derived"
    column: str
    last: int  # k of last<k>; 1 otherwise
    describe: str  # in words
    scale: str  # LOG, LINEAR, or ORDER (censored epochs: only their order is known)
    higher_is_better: bool
    unit: str
    shown_scale: float

    @property
    def censored(self) -> bool:
        return self.reducer == "epochs_to"


def column(name: str) -> Column | None:
    """The registered column `name` (per-layer columns by their prefix), or None."""
    if name in COLUMNS:
        return COLUMNS[name]
    for prefix, col in LAYER_COLUMNS.items():
        m = re.fullmatch(re.escape(prefix) + r"([1-9][0-9]*)", name)
        if m:
            return Column(col.describe.format(i=m.group(1)), col.scale, col.higher_is_better)
    return None


def parse_metric(name) -> Metric | None:
    """The metric a claim names, or None when the name is not in the grammar."""
    if not isinstance(name, str):
        return None
    if name in DERIVED:
        d = DERIVED[name]
        return Metric(
            name=name,
            reducer="derived",
            column=name,
            last=1,
            describe=d.describe,
            scale=d.scale,
            higher_is_better=False,
            unit=d.unit,
            shown_scale=1.0,
        )
    m = _NAME.fullmatch(name)
    col = column(m.group(3)) if m else None
    if col is None:
        return None
    reducer = "last" if m.group(2) else m.group(1)
    k = int(m.group(2)) if m.group(2) else 1
    words = {
        "final": f"final {col.describe}",
        "last": f"{col.describe}, mean of the last {k} epochs",
        "best": f"best {col.describe} over the epochs (the epoch picked on it: optimistic)",
        "mean": f"{col.describe}, mean over all epochs",
        "epochs_to": f"epochs until the {col.describe} reaches the threshold",
    }[reducer]
    return Metric(
        name=name,
        reducer=reducer,
        column=m.group(3),
        last=k,
        describe=words,
        scale=ORDER if reducer == "epochs_to" else col.scale,
        higher_is_better=col.higher_is_better,
        unit=col.unit,
        shown_scale=col.shown_scale,
    )


def reduce_curves(
    metric: Metric, curves: np.ndarray, threshold: float = math.nan, lengths=None
) -> np.ndarray:
    """One number per run from its (runs, epochs) curve of `metric.column`, on the scale on
    which claims compare it (the log of a LOG metric; epochs, +inf when never, for ORDER).

    NaN epochs (after a run diverged) are missing: a diverged run has no final value,
    and never reaches a threshold after it diverged. `lengths` gives each run's own number
    of epochs where runs differ (a steps budget: a batch of 100 makes more epochs than a
    batch of 2); columns past a run's length are not its epochs.
    """
    c = np.atleast_2d(np.asarray(curves, dtype=float))
    n, width = c.shape
    own = np.full(n, width) if lengths is None else np.asarray(lengths, dtype=int)
    rows = np.arange(n)
    if metric.reducer == "epochs_to":
        return epochs_to(c, threshold, metric.higher_is_better)
    if metric.reducer == "final":
        v = c[rows, own - 1] if width else np.full(n, np.nan)
    elif metric.reducer == "last":
        k = np.clip(own[:, None] - metric.last + np.arange(metric.last), 0, max(width - 1, 0))
        v = c[rows[:, None], k].mean(axis=1)  # NaN when any of those epochs is missing
    elif metric.reducer == "mean":
        within = np.arange(width)[None, :] < own[:, None]
        v = np.where(within, c, 0.0).sum(axis=1) / own  # NaN when any epoch is missing
    else:  # best
        f = np.where(np.isfinite(c), c, np.nan)
        some = np.isfinite(f).any(axis=1)
        v = np.full(c.shape[0], np.nan)
        pick = np.nanmax if metric.higher_is_better else np.nanmin
        v[some] = pick(f[some], axis=1)
    return on_scale(metric, v)


def on_scale(metric: Metric, values) -> np.ndarray:
    """Values in the metric's units moved to its comparison scale (log for LOG metrics;
    non-positive and non-finite values become NaN)."""
    v = np.asarray(values, dtype=float)
    if metric.scale != LOG:
        return np.where(np.isfinite(v), v, np.nan)
    out = np.full(v.shape, np.nan)
    ok = np.isfinite(v) & (v > 0)
    out[ok] = np.log(v[ok])
    return out


def epochs_to(curves: np.ndarray, threshold: float, higher_is_better: bool = False) -> np.ndarray:
    """First epoch (1-based) at which each row reaches `threshold` (at or below it; at or
    above for a higher-is-better column); +inf when it never does (censored)."""
    c = np.atleast_2d(np.asarray(curves, dtype=float))
    ok = np.isfinite(c)
    hit = np.zeros(c.shape, dtype=bool)
    cmp = np.greater_equal if higher_is_better else np.less_equal
    cmp(c, threshold, out=hit, where=ok)
    first = np.argmax(hit, axis=1).astype(float) + 1
    first[~hit.any(axis=1)] = math.inf
    return first
