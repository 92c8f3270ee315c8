"""Where a run stands at the end of its budget: converged, still falling, on the plateau of
the constant predictor, or diverged; and what that lets a claim on the sweep decide.

A final error compares methods only where both arms have finished learning. A run that
still falls steeply over the last fifth of its training would end lower with more epochs;
a run on the initial plateau (no better than predicting the train labels' mean, SPEC 5's
`baseline_*` columns) has not started. A claim on such runs measures how soon the arms
get going, not how low they get, and the report must say so (issue 11):

- *change over the last fifth*: the log of the loss averaged over the last 5% of epochs
  (at least one) over the same window ending at 80% of training. Below -0.1 (the loss
  fell by more than ~10% in the last fifth) the run is *still falling*.
- *plateau*: the final loss is within 5% of the constant predictor's, either side (|R^2|
  <= 0.05 on the test set; for classification, test cross-entropy within 5% of that of
  the train class frequencies). A run far worse than the constant predictor has learnt
  something wrong, not nothing: it is not on the plateau.
- A configuration is in a state when more than half of its runs are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

CONVERGED, FALLING, PLATEAU, DIVERGED = "converged", "still falling", "on the plateau", "diverged"
FALLING_BELOW = -0.1  # log change over the last fifth below which a run is still falling
PLATEAU_WITHIN = 0.05  # final loss within this fraction of the constant predictor's
LAST_FIFTH = 0.2
WINDOW = 0.05  # fraction of the epochs averaged at each end of the last fifth
# The loss a run's state is read from, and its constant-predictor column (runs.csv).
LOSS = {
    "regression": ("test_mse", "baseline_test_mse"),
    "classification": ("test_ce", "baseline_test_ce"),
}

# Scopes of a claim: what its runs let it decide.
DECIDED, SPEED, TRAINABILITY, UNDECIDED = (
    "converged",
    "speed",
    "leaving the plateau",
    "not converged",
)
ON_PLATEAU = "measured on the plateau"  # a measure over training; some arm never trained


def last_fifth_change(curves: np.ndarray, lengths=None) -> np.ndarray:
    """Per row of (runs, epochs) positive values: log(mean of the last window) - log(mean
    of the window ending at 80% of the epochs); NaN where either is missing. `lengths`:
    each run's own number of epochs where runs differ (a steps budget)."""
    c = np.atleast_2d(np.asarray(curves, dtype=float))
    own = np.full(c.shape[0], c.shape[1]) if lengths is None else np.asarray(lengths, int)
    out = np.full(c.shape[0], np.nan)
    for epochs in np.unique(own):
        if epochs < 2:
            continue
        rows = own == epochs
        k = max(1, round(WINDOW * epochs))
        cut = max(k, round((1 - LAST_FIFTH) * epochs))
        with np.errstate(invalid="ignore", divide="ignore"):
            end = np.log(c[rows, epochs - k : epochs].mean(axis=1))
            mid = np.log(c[rows, cut - k : cut].mean(axis=1))
        out[rows] = end - mid
    return out


def run_states(runs: pd.DataFrame, curves: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per run (runs' index): the loss's change over the last fifth, the test R^2 for
    regression (1 - final test MSE / the constant predictor's), and the run's state."""
    out = pd.DataFrame(
        {"last_fifth_change": math.nan, "r2": math.nan, "state": CONVERGED}, index=runs.index
    )
    for task, (loss, base_col) in LOSS.items():
        mine = (runs["task"] == task).to_numpy()
        if not mine.any() or loss not in curves:
            continue
        c = curves[loss].to_numpy(float)[mine]
        own = runs.loc[mine, "epochs"].to_numpy(int) if "epochs" in runs else None
        own = np.full(len(c), c.shape[1]) if own is None else np.minimum(own, c.shape[1])
        change = last_fifth_change(c, own)
        final = c[np.arange(len(c)), own - 1] if c.shape[1] else np.full(len(c), np.nan)
        base = runs.loc[mine, base_col].to_numpy(float) if base_col in runs else np.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = final / base
            plateau = np.abs(ratio - 1) <= PLATEAU_WITHIN  # False where base is unknown
        state = np.where(plateau, PLATEAU, np.where(change < FALLING_BELOW, FALLING, CONVERGED))
        out.loc[mine, "last_fifth_change"] = change
        if task == "regression":
            out.loc[mine, "r2"] = 1 - ratio
        out.loc[mine, "state"] = state
    out.loc[runs["diverged"].to_numpy(bool), "state"] = DIVERGED
    return out


def config_states(runs: pd.DataFrame, keys) -> pd.DataFrame:
    """Per configuration (the `keys` columns): the share of runs in each state, and the
    state most of them are in ('mixed' when none has a majority)."""
    g = runs.groupby(list(keys), sort=False)["state"]
    shares = g.value_counts(normalize=True).unstack(fill_value=0.0)
    for s in (CONVERGED, FALLING, PLATEAU, DIVERGED):
        if s not in shares:
            shares[s] = 0.0
    shares = shares[[CONVERGED, FALLING, PLATEAU, DIVERGED]]
    shares["majority"] = [
        next((s for s, v in row.items() if v > 0.5), "mixed") for _, row in shares.iterrows()
    ]
    return shares


@dataclass(frozen=True)
class Scope:
    """What a claim's runs let it decide, and the sentence that says so."""

    kind: str  # DECIDED, SPEED, TRAINABILITY or UNDECIDED
    note: str  # empty when converged

    @property
    def decides(self) -> bool:
        return self.kind != UNDECIDED


def _describe(cfgs: pd.DataFrame, keys) -> str:
    def one(idx) -> str:
        vals = idx if isinstance(idx, tuple) else (idx,)
        return ", ".join(f"{k}={_show(v)}" for k, v in zip(keys, vals, strict=True))

    shown = [one(i) for i in cfgs.index[:4]]
    more = len(cfgs) - len(shown)
    return "; ".join(shown) + (f" and {more} more" if more > 0 else "")


def _show(v) -> str:
    return f"{float(v):g}" if isinstance(v, float | np.floating) else str(v)


def scope(runs: pd.DataFrame, keys, budget: str, speed: bool, mechanism: bool) -> Scope:
    """The scope of a claim over the runs it compares (`runs` with a `state` column),
    configurations told apart by `keys`.

    `speed`: the claim's metric is a time (epochs to a threshold), which runs still
    learning do not invalidate. `mechanism`: a measure over the course of training (a
    probe, a gradient spread), where only a plateau changes what it means.
    """
    if speed:
        return Scope(SPEED, "a claim about speed (epochs to a threshold)")
    keys = [k for k in keys if runs[k].nunique() > 1] or [keys[0]]
    states = config_states(runs, keys)
    plateau = states[states["majority"] == PLATEAU]
    falling = states[states["majority"] == FALLING]
    if len(plateau) == len(states):
        return Scope(
            UNDECIDED,
            f"every compared configuration stays on the constant predictor's plateau for "
            f"all its {budget}: nothing trained, nothing compared",
        )
    if not mechanism and len(falling):
        return Scope(
            UNDECIDED,
            f"not decided: the loss of {_describe(falling, keys)} still falls by more than "
            f"10% over the last fifth of its {budget}; a longer budget decides it",
        )
    if len(plateau):
        what = "measured on a flat plateau" if mechanism else "about leaving the plateau"
        return Scope(
            ON_PLATEAU if mechanism else TRAINABILITY,
            f"{_describe(plateau, keys)} stay on the constant predictor's plateau for all "
            f"its {budget}: the comparison is {what} within the budget, not about the "
            "error reached at convergence",
        )
    return Scope(DECIDED, "")
