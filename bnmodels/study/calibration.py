"""A calibration that can fail: the verdict pipeline on worlds with no true effect, and
on the same worlds with an effect of the size the report prints as detectable.

A *null world* is built from replicas of one real configuration: its runs, relabelled.
Runs that train on the same draw of the data (seed mod draws) stand in for one seed, so
the runs a claim pairs share their data as a real pair does; which replica gets which
label is drawn at random per trial. The labels are configuration keys, so each world is
an ordinary sweep and the claims are ordinary claims, judged by `verdicts.decide`, the
report's own path: the metric (failures at the worst value), pairing by seed, averaging
over cells, the exact test (the sign test for censored times), the guard, the verdict,
Holm over the family. Every claim kind has its world:

- 2 x 2 (`bn` none/pre as the arms x `depth` 1/2 as cells or levels): a pair averaged
  over cells, a trend along depth, an interaction (depth 2 minus depth 1), and a censored
  speed (epochs to a train-MSE threshold that about a third of the runs never reach);
- 4 or more levels of `lr` (as many as replicas per draw, up to 8; the best interior
  level chosen on the other seeds): an optimum;
- 2 x 2 with the compare arm shifted by exactly the margin: an equivalence at its
  boundary, where calling it supported is the error.

The six claims of a trial form one primary family. The *false* rate of a kind is the
share of trials its claim is decided at all (supported or not supported: there is no
effect either way); the *family* rate is the share of trials with any false decision
(Holm's promise: at most alpha). The *power* check plants, per kind, the effect the
pipeline prints as detectable in that world (its `mde` at the family's level) and counts
how often the claim is then supported: about 80% when the printed figure is honest.

A calibration passes when no exact binomial test (at 1%) says a false rate exceeds its
nominal value (alpha / m per kind, alpha for the family) or a power falls short of 80%.
It fails on a broken pipeline (tests/test_calibration.py plants
bugs: the best level chosen on the same seeds, Holm left out, an arm compared with
itself). What it cannot see: a pairing that loses power without bias (pairing by the
wrong seed here only widens the noise, and the printed detectable effect widens with it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats as sps

from bnmodels import pools
from bnmodels.experiment.config import CONFIG_KEYS
from bnmodels.study import stats
from bnmodels.study.claim import Problems, validate_claims
from bnmodels.study.prepared import PreparedSweep, _axes, _configs
from bnmodels.study.verdicts import decide, detectable

ARM_SEEDS = 10  # seeds per arm: those of the report's claims
REPLICAS = 4  # runs per fake seed at least: the 2 x 2 worlds' cells
MAX_LEVELS = 8  # the optimum world has as many levels as replicas per draw, up to this
TRIALS = 16  # per configuration: 128 per kind over the 8 of params.yaml's aa_control
POWER_TRIALS = 4  # per configuration and kind
POWER = 0.8
MARGIN = {"log": 0.25, "linear": 0.02}  # the equivalence world's margin, by scale
KINDS = ("pair", "trend", "interaction", "optimum", "equivalence", "censored_speed")
CALIBRATION_COLUMNS = [
    "kind",
    "metric",
    "configurations",
    "trials",
    "false_rate",  # decided at all in a world with no effect
    "nominal",  # alpha / family size: Holm's first step
    "power",  # supported with the printed detectable effect planted
    "power_trials",
    "passes",
]


def levels(n: int) -> list[float]:
    """The optimum world's `lr` labels: n of them, a log grid."""
    return [float(f"{10.0 ** (k - 3):g}") for k in range(n)]


@dataclass(frozen=True)
class World:
    """One base configuration's replicas: its runs grouped by fake seed (REPLICAS each)."""

    sweep: PreparedSweep
    groups: np.ndarray  # (ARM_SEEDS, replicas) row positions in sweep.runs
    metric: str  # the claims' metric: final_test_mse or last5_test_accuracy
    scale: str  # "log" or "linear"


def worlds(sw: PreparedSweep) -> list[World]:
    """Every configuration of `sw` with REPLICAS runs on each of ARM_SEEDS draws (or, with
    one draw, REPLICAS x ARM_SEEDS seeds)."""
    out = []
    runs = sw.runs.reset_index(drop=True)
    for i in range(len(sw.configs)):
        rows = np.flatnonzero((runs["cfg"] == i).to_numpy())
        if len(rows) < REPLICAS * ARM_SEEDS:
            continue
        draw = runs["draw"].to_numpy() if "draw" in runs and runs["draw"].notna().all() else None
        if draw is None:
            r = min(MAX_LEVELS, len(rows) // ARM_SEEDS)
            groups = rows[: r * ARM_SEEDS].reshape(ARM_SEEDS, r)
        else:
            by = [rows[draw[rows] == d] for d in sorted(set(draw[rows]))]
            by = [g for g in by if len(g) >= REPLICAS][:ARM_SEEDS]
            if len(by) < ARM_SEEDS:
                continue
            r = min(MAX_LEVELS, *(len(g) for g in by))
            groups = np.vstack([g[:r] for g in by])
        task = sw.config_task(i)
        metric, scale = (
            ("final_test_mse", "log") if task == "regression" else ("last5_test_accuracy", "linear")
        )
        out.append(World(sw, groups, metric, scale))
    return out


def _relabel(w: World, rows: np.ndarray, labels: list[dict], name: str) -> PreparedSweep:
    """A sweep of the base runs at `rows` (fake seed j: rows[j]), each relabelled."""
    base = w.sweep.runs.reset_index(drop=True)
    picked = rows.ravel()
    runs = base.iloc[picked].copy().reset_index(drop=True)
    for col, values in pd.DataFrame(labels * len(rows)).items():
        runs[col] = values.to_numpy()
    runs["seed"] = np.repeat(np.arange(len(rows)) + 1000, rows.shape[1])
    keys = [f"{name}-{i}" for i in range(len(runs))]
    runs["run_key"] = keys
    old = base["run_key"].to_numpy()[picked]
    axes = _axes(runs, {k: sorted({lab[k] for lab in labels}) for k in labels[0]})
    configs, runs["cfg"] = _configs(runs, axes)
    return replace(
        w.sweep,
        name=name,
        runs=runs,
        axes=axes,
        configs=configs,
        seeds=sorted(runs["seed"].unique().tolist()),
        curves={m: c.loc[old].set_axis(keys) for m, c in w.sweep.curves.items()},
        grad_scale=w.sweep.grad_scale.loc[old].set_axis(keys),
    )


def _plant(sw: PreparedSweep, mask: np.ndarray, effect: float, scale: str, metric: str):
    """The sweep with `effect` added to the metric of the runs in `mask` (log scale: the
    test MSE multiplied by exp(effect), curve and final value; linear: the test accuracy
    curve shifted)."""
    runs = sw.runs.copy()
    curves = dict(sw.curves)
    column = "test_mse" if scale == "log" else "test_accuracy"
    factor = math.exp(effect) if scale == "log" else None
    c = curves[column].copy()
    keys = runs.loc[mask, "run_key"].to_numpy()
    c.loc[keys] = c.loc[keys] * factor if factor else c.loc[keys] + effect
    curves[column] = c
    if scale == "log":
        runs.loc[mask, "final_test_mse"] = runs.loc[mask, "final_test_mse"] * factor
    else:
        runs.loc[mask, "final_test_accuracy"] = runs.loc[mask, "final_test_accuracy"] + effect
    return replace(sw, runs=runs, curves=curves)


GRID = [{"bn": b, "depth": d} for d in (1, 2) for b in ("none", "pre")]  # 2 x 2 world


def _claims(w: World, grid: PreparedSweep, line: PreparedSweep, equiv: PreparedSweep, t: float):
    """The six claims of a trial (all primary: one family), parsed as params.yaml's are."""
    pair = {"compare": {"bn": "pre"}, "against": {"bn": "none"}}
    specs = {
        "pair": {"sweep": grid.name, **pair, "metric": w.metric, "expect": "lower"},
        "trend": {
            "sweep": grid.name,
            "kind": "trend",
            **pair,
            "along": "depth",
            "metric": w.metric,
            "expect": "lower",
        },
        "interaction": {
            "sweep": grid.name,
            "kind": "interaction",
            **pair,
            "group": {"depth": 2},
            "than": {"depth": 1},
            "metric": w.metric,
            "expect": "lower",
        },
        "optimum": {
            "sweep": line.name,
            "kind": "optimum",
            "along": "lr",
            "metric": w.metric,
            "expect": "maximum" if w.scale == "linear" else "minimum",
        },
        "equivalence": {
            "sweep": equiv.name,
            **pair,
            "metric": w.metric,
            "expect": "same",
            "margin": MARGIN[w.scale],
        },
    }
    if w.scale == "log" and math.isfinite(t):
        specs["censored_speed"] = {
            "sweep": grid.name,
            **pair,
            "metric": "epochs_to_train_mse",
            "threshold": t,
            "expect": "lower",
        }
    runs = {s.name: s.runs[list(CONFIG_KEYS)].to_dict("records") for s in (grid, line, equiv)}
    errors = Problems()
    raw = {k: {"says": k, "primary": True, **v} for k, v in specs.items()}
    claims = validate_claims(raw, runs, errors)
    if errors:
        raise ValueError("; ".join(errors))
    return claims


def _threshold(w: World) -> float:
    """A train-MSE threshold that about a third of the base runs never reach."""
    if w.scale != "log" or "train_mse" not in w.sweep.curves:
        return math.nan
    best = w.sweep.curves["train_mse"].to_numpy()[w.groups.ravel()]
    lowest = np.nanmin(np.where(np.isfinite(best), best, np.nan), axis=1)
    return float(np.nanquantile(lowest, 1 / 3)) if np.isfinite(lowest).any() else math.nan


def trial_worlds(w: World, rng: np.random.Generator, name: str):
    """The three worlds of one trial (the replicas shuffled within each fake seed)."""
    shuffled = [np.vstack([rng.permutation(g) for g in w.groups]) for _ in range(3)]
    grid = _relabel(w, shuffled[0][:, :REPLICAS], GRID, f"{name}-grid")
    line_labels = [{"lr": lr} for lr in levels(w.groups.shape[1])]
    line = _relabel(w, shuffled[1], line_labels, f"{name}-line")
    equiv = _relabel(w, shuffled[2][:, :REPLICAS], GRID, f"{name}-equiv")
    pre = (equiv.runs["bn"] == "pre").to_numpy()
    margin = math.log1p(MARGIN[w.scale]) if w.scale == "log" else MARGIN[w.scale]
    equiv = _plant(equiv, pre, margin, w.scale, w.metric)
    return grid, line, equiv


def _planted(w: World, kind: str, grid, line, effect: float) -> PreparedSweep:
    """The world of `kind` with `effect` planted the way its claim expects: the compare
    arm lower (at depth 2 only, for a trend or an interaction), or both edges of the
    optimum worse (higher error, lower accuracy)."""
    if kind == "optimum":
        lrs = sorted(set(line.runs["lr"]))
        edges = line.runs["lr"].isin([lrs[0], lrs[-1]]).to_numpy()
        worse = 1.0 if w.scale == "log" else -1.0
        return _plant(line, edges, worse * effect, w.scale, w.metric)
    r = grid.runs
    where = (r["bn"] == "pre").to_numpy().copy()
    if kind in ("trend", "interaction"):
        where &= (r["depth"] == 2).to_numpy()
    return _plant(grid, where, -effect, w.scale, w.metric)


CHECK = 0.01  # a rate fails when a binomial test rejects its nominal value at this level


def too_many(k: int, n: int, p: float) -> bool:
    """Whether k events in n trials are more than a rate of p allows (exact binomial)."""
    return n > 0 and sps.binom.sf(k - 1, n, p) < CHECK


def too_few(k: int, n: int, p: float) -> bool:
    """Whether k successes in n trials are fewer than a rate of p allows."""
    return n > 0 and sps.binom.cdf(k, n, p) < CHECK


def _counts(w: World, seed: int, trials: int, power_trials: int, judge: Callable) -> dict:
    """One world's trials: per kind [false decisions, trials], [supported, power trials],
    the metrics named, and the smallest family (a generator of its own: the same counts
    whatever runs them)."""
    rng = np.random.default_rng([0, seed])
    t = _threshold(w)
    out = {
        "false": {k: [0, 0] for k in (*KINDS, "family")},
        "power": {k: [0, 0] for k in KINDS if k not in ("equivalence", "censored_speed")},
        "metrics": {k: set() for k in (*KINDS, "family")},
        "smallest": len(KINDS),
    }
    false, power = out["false"], out["power"]
    for trial in range(trials):
        grid, line, equiv = trial_worlds(w, rng, f"w{seed}t{trial}")
        claims = _claims(w, grid, line, equiv, t)
        out["smallest"] = min(out["smallest"], len(claims))
        sweeps = {s.name: s for s in (grid, line, equiv)}
        decisions = {d.claim.id: d for d in judge(list(claims.values()), sweeps)}
        any_false = False
        for kind, d in decisions.items():
            if kind == "equivalence":
                wrong = d.verdict == stats.SUPPORTED
            else:
                wrong = d.verdict in (stats.SUPPORTED, stats.NOT_SUPPORTED)
            false[kind][0] += wrong
            false[kind][1] += 1
            out["metrics"][kind].add(d.claim.metric.name)
            any_false |= wrong
        false["family"][0] += any_false
        false["family"][1] += 1
        out["metrics"]["family"].add(w.metric)
        if trial < power_trials:
            _power_trial(w, claims, decisions, grid, line, power, judge)
    return out


def calibrate(
    sw: PreparedSweep,
    trials: int = TRIALS,
    power_trials: int = POWER_TRIALS,
    judge: Callable = decide,
    workers: int = 1,
) -> pd.DataFrame:
    """The calibration rows (one per claim kind, and the family) over every configuration
    of `sw` with enough replicas; `judge` is the verdict path (a test swaps in a broken
    one); `workers` > 1 judges the configurations in forked processes (the same rows)."""
    found = worlds(sw)
    args = [(w, i, trials, power_trials, judge) for i, w in enumerate(found)]
    if workers > 1 and len(found) > 1:
        with pools.finishing(pools.fork_pool(min(workers, len(found)))) as pool:
            parts = list(pool.map(_counts, *zip(*args, strict=True)))
    else:
        parts = [_counts(*a) for a in args]
    false = {k: [0, 0] for k in (*KINDS, "family")}
    power = {k: [0, 0] for k in KINDS if k not in ("equivalence", "censored_speed")}
    metrics: dict[str, set] = {k: set() for k in false}
    configs = {k: 0 for k in false}
    for part in parts:
        for table, total in ((part["false"], false), (part["power"], power)):
            for k, (hits, n) in table.items():
                total[k][0] += hits
                total[k][1] += n
        for k, names in part["metrics"].items():
            metrics[k] |= names
            configs[k] += bool(part["false"][k][1])
    smallest = min((p["smallest"] for p in parts), default=len(KINDS))
    return _rows(false, power, metrics, configs, smallest)


def _power_trial(w, claims, decisions, grid, line, power, judge) -> None:
    """Plant each kind's printed detectable effect in its world; count supported."""
    for kind in power:
        d = decisions.get(kind)
        if d is None:
            continue
        mde = detectable(d.claim, d.evidence, d.level)
        if not math.isfinite(mde):
            continue
        planted = _planted(w, kind, grid, line, mde)
        # the claim alone, held to the level it faces in its family (Holm's first step,
        # where its detectable effect is printed): supported, and p at or below it
        (out,) = judge([claims[kind]], {planted.name: planted})
        power[kind][0] += out.verdict == stats.SUPPORTED and out.p <= d.level * (1 + 1e-9)
        power[kind][1] += 1


def _rows(false, power, metrics, configs, family) -> pd.DataFrame:
    rows = []
    for kind, (k, n) in false.items():
        if not n:
            continue
        nominal = stats.ALPHA if kind == "family" else stats.ALPHA / family
        rate = k / n
        pk, pn = power.get(kind, (0, 0))
        pw = pk / pn if pn else math.nan
        ok = not too_many(k, n, nominal) and not too_few(pk, pn, POWER)
        ok &= kind not in power or pn > 0  # a power check that never ran is not passed
        rows.append(
            {
                "kind": kind,
                "metric": ", ".join(sorted(metrics[kind])),
                "configurations": configs[kind],
                "trials": n,
                "false_rate": rate,
                "nominal": nominal,
                "power": pw,
                "power_trials": pn,
                "passes": bool(ok),
            }
        )
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)


def passes(cal: pd.DataFrame) -> bool:
    """Whether a calibration has rows and every one passes."""
    return bool(len(cal)) and bool(cal["passes"].all())
