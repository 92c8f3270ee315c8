"""An A/A control: the whole verdict pipeline on comparisons with no true effect.

Take one configuration's runs, split its seeds at random into two arms of equal size and
pair them at random: whatever the pipeline then calls supported is a false positive. Each
trial runs what a real claim runs: the metric read from every run (diverged runs as
failures), per-pair differences, the exact sign-flip test, the verdict, and the guard (the
effect followed over the last fifth, and the configuration's still moving runs). Every
trial is a family of one (no Holm), the worst case for a claim of the report. A claim's
direction is fixed before the data, so its false-supported rate is that of one direction
("lower"; nominal 2.5% for a two-sided 5% test); the rate in either direction (nominal
5%) is what a claim written after seeing the sign would have.

A claim here has n = 10 seeds, so the control needs configurations of at least 20 seeds
(two disjoint arms of 10): with 5 pairs the exact test cannot reach 5% at all (its floor
is 2/32), and such a control could not fail. It runs on every configuration with 20
seeds or more (params.yaml's `aa_control` sweep), for every metric a claim names that
those runs record, with a fixed random generator (byte-stable).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from bnmodels.study import convergence, exact, stats
from bnmodels.study.claim import PAIR, Claim
from bnmodels.study.evaluate import has_path, run_values
from bnmodels.study.prepared import PreparedSweep

ARM_SEEDS = 10  # seeds per arm: those of the report's claims
TRIALS = 400  # per configuration and metric
CALIBRATION_COLUMNS = [
    "metric",
    "kind",
    "configurations",
    "trials",
    "false_supported",  # a claim with its direction fixed beforehand ("lower")
    "false_either_way",  # as if the claim had been written after seeing the sign
]


def _kind(claim: Claim) -> str:
    m = claim.metric
    if m.censored:
        return "speed (censored epochs, sign test)"
    if m.reducer in ("mean", "derived"):
        return f"measure over training ({m.scale})"
    return f"final value ({m.scale})"


def _probe(metric_claim: Claim, sw: PreparedSweep) -> Claim:
    """The claim's metric as a pair claim on the control sweep (arms are set per trial)."""
    return Claim(
        id=f"aa_{metric_claim.metric.name}",
        kind=PAIR,
        says="",
        sweep=sw.name,
        metric=metric_claim.metric,
        expect="lower",
        threshold=metric_claim.threshold,
    )


def _trial(values: np.ndarray, moving: np.ndarray, pick: np.ndarray, path: bool) -> str:
    """One A/A comparison: the direction the pipeline calls supported ("lower", "higher"),
    or "" when it calls nothing.

    values: (seeds, points) the metric at each point of convergence.PATH (one point
    without a path); moving: (seeds,) the run still falls or rises; pick: a permutation.
    """
    a, b = pick[:ARM_SEEDS], pick[ARM_SEEDS : 2 * ARM_SEEDS]
    d = values[a] - values[b]  # (pairs, points)
    final = d[:, -1]
    if not np.isfinite(final).sum() >= 2:
        return ""
    p = exact.sign_flip_p(final)
    est = float(np.nanmean(final))
    expect = "lower" if est < 0 else "higher"  # the direction a claim would have had
    t = stats.Test(est, math.nan, math.nan, p, int(np.isfinite(final).sum()))
    verdict = stats.verdict(expect, t, p)
    if verdict != stats.SUPPORTED:
        return ""
    if path:
        share = max(moving[a].mean(), moving[b].mean())
        m = convergence.Movement(verdict, expect, 0.0, np.nanmean(d, axis=0))
        if share >= convergence.MOVING_SHARE and convergence.could_change(m):
            return ""  # the guard voids it
    return expect


def calibrate(sw: PreparedSweep, claims: Iterable[Claim], trials: int = TRIALS) -> pd.DataFrame:
    """The rate of false 'supported' per metric a claim names, over the configurations of
    `sw` with at least 2 x ARM_SEEDS seeds."""
    rng = np.random.default_rng(0)
    runs = sw.runs
    big = [i for i in range(len(sw.configs)) if (runs["cfg"] == i).sum() >= 2 * ARM_SEEDS]
    rows, seen = [], set()
    for c in claims:
        if c.metric.name in seen or not big:
            continue
        seen.add(c.metric.name)
        probe = _probe(c, sw)
        try:
            points = convergence.PATH if has_path(c.metric) else (1.0,)
            table = np.column_stack([run_values(probe, sw, f).to_numpy() for f in points])
        except KeyError:  # this sweep does not record the column (probes, accuracy)
            continue
        moving = runs["state"].isin([convergence.FALLING, convergence.RISING]).to_numpy()
        lower = either = total = configs = 0
        for i in big:
            rows_i = np.flatnonzero((runs["cfg"] == i).to_numpy())
            values = table[rows_i]
            if np.isfinite(values[:, -1]).sum() < 2 * ARM_SEEDS:
                continue  # the metric is not this configuration's (another task's column)
            configs += 1
            for _ in range(trials):
                pick = rng.permutation(len(rows_i))
                called = _trial(values, moving[rows_i], pick, has_path(c.metric))
                lower += called == "lower"
                either += called != ""
                total += 1
        if total:
            rows.append(
                {
                    "metric": c.metric.name,
                    "kind": _kind(c),
                    "configurations": configs,
                    "trials": total,
                    "false_supported": lower / total,
                    "false_either_way": either / total,
                }
            )
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)
