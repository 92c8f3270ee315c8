"""Judging claims on prepared sweeps: each claim's per-seed effects, its test, the family's
correction, and one `ClaimResult` per claim.

Every claim reduces to one number per seed (runs with the same seed share their batches
and initial Linear weights, so differences within a seed remove the seed-to-seed spread):

- pair: the mean over the other axes' cells of `compare - against` (on the metric's
  scale: log for error-like metrics; for censored epochs-to-threshold, the sign of the
  difference: +1 when `compare` reaches the threshold later, -1 sooner, 0 for a tie or
  when neither does, so a censored time is only ever used through its order);
- trend: the least-squares slope of the pair's per-level effect against `along`;
- interaction: the pair's effect in `group` minus its effect in `than`;
- optimum: each edge level minus the best interior level, that level chosen on the
  *other* seeds (choosing it on the same seed would bias the edges upward); the claim
  needs both edges worse (an intersection-union test: p is the larger p).

A level of an optimum (or a `best` arm) where more than half the runs diverged is left
out: its surviving runs are the lucky ones. The family of tests is the report: Holm's
correction over every claim judged, and the verdict is read from the corrected p.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bnmodels import columns
from bnmodels.study import convergence, exact, stats
from bnmodels.study.claim import BEST, INTERACTION, MAXIMUM, OPTIMUM, PAIR, SAME, TREND, Claim
from bnmodels.study.metrics import LOG, ORDER, Metric, on_scale, reduce_curves
from bnmodels.study.prepared import PreparedSweep, label, nanmean, show


@dataclass(frozen=True)
class Evidence:
    """One claim's test before the family's correction, and what it compared."""

    test: stats.Test
    n_dropped: int  # cell pairs (or seeds) without a finite value: diverged runs
    comparison: str  # in words
    detail: str  # the numbers behind it: per-arm or per-edge summaries
    # the per-seed numbers the test is on: one row, or an optimum's two edges (each edge
    # minus the best level; the claim needs both worse)
    per_seed: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    estimate: float  # on the claim's scale (log ratio, slope, net share, units)
    ci_low: float
    ci_high: float
    p: float  # the exact sign-flip test's (study/exact.py)
    p_holm: float  # Holm's correction of p within the primary family; NaN if exploratory
    n: int  # seeds behind the estimate
    k_agree: int  # seeds whose own effect has the expected sign (or lies in the margin)
    mde: float  # the smallest effect (its scale) the claim's test detects at its level
    n_dropped: int
    n_failed: int  # diverged runs counted as failures (the worst value)
    verdict: str
    scope: convergence.Scope  # what the runs let the claim decide
    comparison: str  # in words, in full
    short: str  # the comparison in a few words, for the table
    effect: str  # the estimate and interval, formatted for reading
    detail: str
    budget: str = ""  # the sweep's training budget in words ("150 epochs")
    cells: tuple = ()  # study.cells.Cell per cell the claim averages over
    where: str = ""  # where the effect lives, in words
    level: float = math.nan  # the level the claim faces (alpha / family size, or alpha)
    needed: int | None = None  # seeds that must agree to reach it (None: not reachable)
    per_seed: tuple = ()  # the per-seed numbers that decide it (an optimum: weaker edge)


# ---------------------------------------------------------------------------
# Per-run values and arms


FAILURE_COLUMNS = columns.METRICS


def has_path(m: Metric) -> bool:
    """Whether the metric can be read at any epoch (a final or last-k value of a curve)."""
    return m.reducer in ("final", "last")


def run_values(claim: Claim, sw: PreparedSweep, fraction: float = 1.0) -> pd.Series:
    """The claim's metric for every run of the sweep, on its comparison scale; with
    `fraction` < 1, as it stood at that fraction of each run's own epochs (`has_path`).

    A diverged run of a loss or accuracy metric is a failure, not a missing value
    (dropping it would compare the lucky survivors): it gets the worst value of the sweep,
    at least as bad as the constant predictor's.
    """
    m = claim.metric
    if m.reducer == "derived":
        v = on_scale(m, sw.runs[m.name])
    elif m.name in sw.runs.columns and fraction == 1.0:  # runs.csv has it (final_test_mse)
        v = on_scale(m, sw.runs[m.name])
    else:
        curves = sw.curve(m.column)
        lengths = np.minimum(sw.runs["epochs"].to_numpy(int), curves.shape[1])
        lengths = np.maximum(1, np.round(lengths * fraction).astype(int))
        v = reduce_curves(m, curves, _threshold(claim, sw, curves), lengths)
    v = np.array(v, dtype=float)
    failed = sw.runs["diverged"].to_numpy(bool) & ~np.isfinite(v)
    if failed.any() and m.reducer in ("final", "last", "best") and m.column in FAILURE_COLUMNS:
        base = f"baseline_{m.column}"
        bad = np.concatenate([stats.finite(v), stats.finite(on_scale(m, sw.runs.get(base, [])))])
        if bad.size:
            v[failed] = bad.min() if m.higher_is_better else bad.max()
    return pd.Series(v, index=sw.runs["run_key"].to_numpy())


def _threshold(claim: Claim, sw: PreparedSweep, curves: np.ndarray):
    """The claim's threshold: one number, or one per run (runs, 1) from the baselines."""
    t = claim.threshold
    if math.isfinite(t.value):
        return t.value
    if math.isfinite(t.baseline_fraction):
        col = f"baseline_{claim.metric.column}"
        base = sw.runs[col].to_numpy(float) if col in sw.runs else np.full(len(sw.runs), np.nan)
        return (t.baseline_fraction * base)[:, None]
    first = stats.finite(curves[:, 0]) if curves.size else np.array([])
    return t.start_fraction * float(np.median(first)) if first.size else math.nan


def _better_sign(m: Metric, claim: Claim) -> float:
    """+1 when lower values are better for an optimum's or a `best` arm's search."""
    if claim.kind == OPTIMUM:
        return -1.0 if claim.expect == MAXIMUM else 1.0
    return -1.0 if m.higher_is_better else 1.0


def _level_table(r: pd.DataFrame, key: str) -> pd.DataFrame:
    """(seeds, levels) of the value averaged over the other cells of each seed."""
    return r.groupby(["seed", key], sort=True)["value"].agg(nanmean).unstack(key)


def _eligible(r: pd.DataFrame, key: str) -> list:
    """Levels at which at most half of the runs diverged, in ascending order."""
    share = r.groupby(key, sort=True)["diverged"].mean()
    return [lv for lv, s in share.items() if s <= 0.5]


def _cv_best(table: pd.DataFrame, levels: Sequence, sign: float) -> pd.Series:
    """Per seed, the level with the best mean over the *other* seeds (first on ties)."""
    out = {}
    for seed in table.index:
        others = table.drop(index=seed)[list(levels)]
        score = others.apply(nanmean).to_numpy() * sign
        out[seed] = levels[int(np.nanargmin(score))] if np.isfinite(score).any() else levels[0]
    return pd.Series(out)


def _arm_runs(sw, values, filt: Mapping, cols: list[str], sign: float):
    """The runs an arm selects, with their values; a `best` key resolved per seed on the
    other seeds. Returns (runs with a `value` column, the level chosen per seed or None)."""
    best = [k for k, v in filt.items() if BEST in v]
    plain = {k: v for k, v in filt.items() if k not in best}
    r = sw.runs.loc[sw.select(**plain), ["seed", *cols, *best, "diverged", "run_key"]].copy()
    r["value"] = values.reindex(r["run_key"]).to_numpy()
    if not best:
        return r, None
    k, levels = best[0], _eligible(r, best[0])
    if not levels:  # every level mostly diverged: no best level to compare with
        return r.iloc[:0], None
    chosen = _cv_best(_level_table(r, k), levels, sign)
    return r[r[k].to_numpy() == chosen.reindex(r["seed"]).to_numpy()], chosen


def _arm(sw, values, filt: Mapping, cells: list[str], sign: float) -> pd.Series:
    """(seed, *cells) -> value of the runs an arm selects, levels of list-valued keys
    averaged; a `best` key resolved per seed on the other seeds."""
    r, _ = _arm_runs(sw, values, filt, cells, sign)
    return r.groupby(["seed", *cells], sort=True)["value"].mean()


def _difference(a: pd.Series, b: pd.Series, m: Metric) -> pd.Series:
    if m.scale == ORDER:  # censored times (+inf): only their order is known
        both_never = np.isinf(a) & np.isinf(b)
        return pd.Series(np.where(both_never, 0.0, np.sign(a - b)), index=a.index)
    return a - b


def _pair(claim: Claim, sw: PreparedSweep, values: pd.Series, extra: Mapping):
    """Per-seed effect `compare - against` within where + extra; (Series, dropped)."""
    where = {**dict(claim.where), **extra}
    a_f, b_f = {**where, **dict(claim.compare)}, {**where, **dict(claim.against)}
    cells = _cells(claim, sw, where)
    sign = _better_sign(claim.metric, claim)
    a = _arm(sw, values, a_f, cells, sign)
    b = _arm(sw, values, b_f, cells, sign)
    both = pd.concat({"a": a, "b": b}, axis=1, join="inner")
    d = _difference(both["a"], both["b"], claim.metric)
    ok = np.isfinite(d.to_numpy(float))
    return d[ok].groupby(level="seed").mean(), int((~ok).sum())


# ---------------------------------------------------------------------------
# The four kinds


def _test(x, claim: Claim) -> stats.Test:
    """The t-based estimate and interval of per-seed values; censored times' ternary
    scores get the exact interval of their net share instead (study/exact.py)."""
    t = stats.one_sample(x, _margin(claim))
    if claim.metric.scale == ORDER:
        est, lo, hi = exact.order_interval(x)
        return stats.Test(est, lo, hi, t.p, t.n)
    return t


def _margin(claim: Claim) -> float | None:
    if claim.expect != SAME:
        return None
    return math.log1p(claim.margin) if claim.metric.scale == LOG else claim.margin


def _words_filter(f) -> str:
    return label({k: v[0] if len(v) == 1 else list(v) for k, v in dict(f).items()})


def _arms_words(claim: Claim) -> str:
    return f"{_words_filter(claim.compare)} vs {_words_filter(claim.against)}"


def _cells(claim: Claim, sw: PreparedSweep, where: Mapping) -> list[str]:
    """Axes on which the two arms' runs are matched (besides seed): every axis the arms do
    not set and `where` does not fix to one value."""
    arms = {k for f in (claim.compare, claim.against) for k, _ in f}
    return [k for k in sw.axes if k not in arms and len(where.get(k, (0, 0))) != 1]


def _where_words(claim: Claim, sw: PreparedSweep, extra: Mapping | None = None) -> str:
    cells = _cells(claim, sw, {**dict(claim.where), **(extra or {})})
    out = f", where {_words_filter(claim.where)}" if claim.where else ""
    return out + (f", averaged over {', '.join(cells)} within each seed" if cells else "")


def _scale_words(m: Metric) -> str:
    if m.scale == LOG:
        return "log ratio (shown as the change of the geometric mean)"
    if m.scale == ORDER:
        return (
            "per seed +1 when the first arm reaches the threshold later, -1 sooner, 0 for "
            "a tie or neither (net share of seeds)"
        )
    return f"difference in {m.unit or 'units'}"


def _pair_evidence(claim: Claim, sw: PreparedSweep, values: pd.Series) -> Evidence:
    s, dropped = _pair(claim, sw, values, {})
    words = (
        f"{claim.metric.describe}, {_arms_words(claim)}{_where_words(claim, sw)}; "
        f"{_scale_words(claim.metric)}, paired by seed"
    )
    return Evidence(
        _test(s, claim), dropped, words, _arm_detail(claim, sw, values), (s.to_numpy(float),)
    )


def _along_levels(claim: Claim, sw: PreparedSweep) -> list:
    """The levels of `along` the claim spans: the sweep's, or those `where` keeps."""
    kept = dict(claim.where).get(claim.along)
    levels = sw.axes[claim.along]
    return [lv for lv in levels if lv in kept] if kept else list(levels)


def _trend_evidence(claim: Claim, sw: PreparedSweep, values: pd.Series) -> Evidence:
    levels = _along_levels(claim, sw)
    per_level, dropped = {}, 0
    for lv in levels:
        per_level[lv], d = _pair(claim, sw, values, {claim.along: (lv,)})
        dropped += d
    table = pd.DataFrame(per_level)  # (seeds, levels)
    slope = stats.slopes(np.asarray(levels, dtype=float), table.to_numpy())
    words = (
        f"per-seed slope against {claim.along} of the effect of {_arms_words(claim)} on the "
        f"{claim.metric.describe}{_where_words(claim, sw, {claim.along: (0,)})}; "
        f"{_scale_words(claim.metric)} "
        f"per unit of {claim.along}"
    )
    means = ", ".join(
        f"{claim.along} {show(lv)}: {_fmt(claim.metric, nanmean(table[lv]))}" for lv in levels
    )
    return Evidence(
        _test(slope, claim), dropped, words, f"Effect per level: {means}.", (np.asarray(slope),)
    )


def _interaction_evidence(claim: Claim, sw: PreparedSweep, values: pd.Series) -> Evidence:
    sg, dg = _pair(claim, sw, values, dict(claim.group))
    st, dt = _pair(claim, sw, values, dict(claim.than))
    both = pd.concat({"g": sg, "t": st}, axis=1, join="inner")
    g, t = _words_filter(claim.group), _words_filter(claim.than)
    words = (
        f"effect of {_arms_words(claim)} on the {claim.metric.describe} in {g} minus in "
        f"{t}{_where_words(claim, sw, dict(claim.group))}; "
        f"{_scale_words(claim.metric)}, paired by seed"
    )
    detail = (
        f"Effect in {g}: {_fmt(claim.metric, nanmean(sg))}; in {t}: "
        f"{_fmt(claim.metric, nanmean(st))}."
    )
    diff = (both["g"] - both["t"]).to_numpy(float)
    return Evidence(_test(diff, claim), dg + dt, words, detail, (diff,))


def _optimum_evidence(claim: Claim, sw: PreparedSweep, values: pd.Series) -> Evidence:
    key, sign = claim.along, _better_sign(claim.metric, claim)
    r = sw.runs.loc[sw.select(**dict(claim.where)), ["seed", key, "diverged", "run_key"]].copy()
    r["value"] = values.reindex(r["run_key"]).to_numpy() * sign  # lower is better now
    levels = _eligible(r, key)
    left_out = [lv for lv in _along_levels(claim, sw) if lv not in levels]
    where = f" ({_words_filter(claim.where)})" if claim.where else ""
    shape = "minimum" if sign > 0 else "maximum"
    words = (
        f"{claim.metric.describe} against {key}{where}: the smallest and the largest "
        f"{key} vs the best level between them (chosen on the other seeds); the weaker "
        f"edge is shown; {_scale_words(claim.metric)}"
    )
    if left_out:
        words += f"; left out as mostly diverged: {key} {', '.join(map(show, left_out))}"
    if len(levels) < 3:
        nan = stats.Test(math.nan, math.nan, math.nan, 1.0, 0)
        return Evidence(nan, 0, words, f"Fewer than 3 levels of {key} without mass divergence.")
    table = _level_table(r, key)  # (seeds, levels), better = lower
    best = _cv_best(table, levels[1:-1], 1.0)
    at_best = np.array([table.loc[s, best[s]] for s in table.index])
    edges = {lv: stats.one_sample(table[lv].to_numpy() - at_best) for lv in (levels[0], levels[-1])}
    weak = min(edges.values(), key=lambda t: t.estimate if math.isfinite(t.estimate) else -math.inf)
    test = stats.Test(
        weak.estimate,
        weak.ci_low,
        weak.ci_high,
        max(t.p for t in edges.values()),
        min(t.n for t in edges.values()),
    )
    picked = ", ".join(
        f"{show(lv)} ({int((best == lv).sum())} seeds)" for lv in dict.fromkeys(best)
    )
    per_edge = "; ".join(
        f"{key} {show(lv)}: {_fmt(claim.metric, t.estimate, t.ci_low, t.ci_high)}"
        for lv, t in edges.items()
    )
    detail = f"Interior {shape} at {key} {picked}. Each edge vs it (worse > 0): {per_edge}."
    dropped = int(r.loc[r[key].isin(levels), "value"].isna().sum())
    per_edge = tuple(table[lv].to_numpy() - at_best for lv in edges)
    return Evidence(test, dropped, words, detail, per_edge)


KINDS = {
    PAIR: _pair_evidence,
    TREND: _trend_evidence,
    INTERACTION: _interaction_evidence,
    OPTIMUM: _optimum_evidence,
}


# ---------------------------------------------------------------------------
# Formatting and the family


def _fmt1(m: Metric, x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    if m.scale == LOG:  # a change of the geometric mean; past 10x as a factor ("x164")
        if x >= math.log(10):
            return f"x{math.exp(x):.3g}"
        if x <= -math.log(10):
            return f"/{math.exp(-x):.3g}"
        return f"{100 * math.expm1(x):+.0f}%"
    if m.scale == ORDER:
        return f"{x:+.2f}"
    return f"{x * m.shown_scale:+.3g}"


def _fmt(m: Metric, est: float, lo: float = math.nan, hi: float = math.nan) -> str:
    """An effect in the metric's terms: a log ratio as the change of the geometric mean,
    other effects in their units (given once, at the end)."""
    unit = f" {m.unit}" if m.unit and m.scale not in (LOG, ORDER) else ""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return _fmt1(m, est) + unit
    return f"{_fmt1(m, est)} [{_fmt1(m, lo)}, {_fmt1(m, hi)}]{unit}"


def _arm_detail(claim: Claim, sw: PreparedSweep, values: pd.Series) -> str:
    parts = []
    sign = _better_sign(claim.metric, claim)
    for arm in (claim.compare, claim.against):
        r, chosen = _arm_runs(sw, values, {**dict(claim.where), **dict(arm)}, [], sign)
        v = r["value"].to_numpy(float)
        name = _words_filter(arm)
        if chosen is not None:
            counts = chosen.value_counts(sort=False)
            name += " (" + ", ".join(f"{show(lv)}: {n} seeds" for lv, n in counts.items()) + ")"
        if claim.metric.scale == ORDER:
            parts.append(f"{name}: reached {int(np.isfinite(v).sum())}/{v.size}")
        elif claim.metric.scale == LOG:
            parts.append(f"{name}: geometric mean {math.exp(nanmean(v)):.3g}")
        else:
            mean = nanmean(v) * claim.metric.shown_scale
            parts.append(f"{name}: mean {mean:.3g} {claim.metric.unit}".rstrip())
    return "Per arm: " + "; ".join(parts) + "."


def short_words(c: Claim) -> str:
    """The comparison in a few words: arms, groups or axis, and the metric."""
    where = f" ({_words_filter(c.where)})" if c.where else ""
    if c.kind == OPTIMUM:
        return f"{c.metric.name} against {c.along}{where}"
    arms = f"{_arms_words(c)}{where}"
    if c.kind == TREND:
        arms += f", slope along {c.along}"
    elif c.kind == INTERACTION:
        arms += f", {_words_filter(c.group)} minus {_words_filter(c.than)}"
    return f"{arms}: {c.metric.name}"


def _contrasted_levels(claim: Claim, sw: PreparedSweep, values: pd.Series) -> tuple:
    """An optimum's levels that its test contrasts: the two edges and every interior level
    some seed chose as the best."""
    key = claim.along
    r = sw.runs.loc[sw.select(**dict(claim.where)), ["seed", key, "diverged", "run_key"]].copy()
    r["value"] = values.reindex(r["run_key"]).to_numpy()
    levels = _eligible(r, key)
    if len(levels) < 3:
        return tuple(levels)
    best = _cv_best(_level_table(r, key), levels[1:-1], 1.0)
    return (levels[0], *dict.fromkeys(best.tolist()), levels[-1])


def compared_runs(claim: Claim, sw: PreparedSweep) -> pd.DataFrame:
    """The runs a claim's test contrasts: those its arms select within `where` (and an
    interaction's two groups), a `best` arm at its level best over all seeds; for an
    optimum, the edges and the levels chosen as the best."""
    contexts = [dict(claim.where)]
    if claim.kind == INTERACTION:
        contexts = [{**contexts[0], **dict(f)} for f in (claim.group, claim.than)]
    values = run_values(claim, sw) * _better_sign(claim.metric, claim)  # lower is better
    if claim.kind == OPTIMUM:
        return sw.runs[
            sw.select(**contexts[0])
            & sw.select(**{claim.along: _contrasted_levels(claim, sw, values)})
        ]
    arms = [dict(claim.compare), dict(claim.against)]
    mask = pd.Series(False, index=sw.runs.index)
    for where in contexts:
        for arm in arms:
            m = sw.select(**where, **{k: v for k, v in arm.items() if BEST not in v})
            for k in (k for k, v in arm.items() if BEST in v):
                r = sw.runs.loc[m, [k, "diverged", "run_key"]].copy()
                r["value"] = values.reindex(r["run_key"]).to_numpy()
                levels = _eligible(r, k)
                if levels:
                    means = r[r[k].isin(levels)].groupby(k)["value"].agg(nanmean)
                    m &= sw.select(**{k: (means.idxmin(),)})
            mask |= m
    return sw.runs[mask]


def _counts_failures(m: Metric) -> bool:
    return m.reducer in ("final", "last", "best") and m.column in FAILURE_COLUMNS


def evidence(claim: Claim, sw: PreparedSweep) -> Evidence:
    return KINDS[claim.kind](claim, sw, run_values(claim, sw))
