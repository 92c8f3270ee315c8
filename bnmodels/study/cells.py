"""Where a claim's effect lives: its per-seed effect in each cell it averages over.

A claim reduces each seed to one number, averaging over the cells its arms do not fix
(depths, activations, a trend's levels, an interaction's two groups). A pooled -35% can
come from two cells of four, where one arm never left the plateau; so every claim also
gets its effect per cell, with an interval over seeds and the state of each arm's runs in
that cell (reports/claim_cells.csv), and the report says which cells carry it. The
intervals are simultaneous within a claim (Bonferroni over its k cells: each at
1 - 0.05 / k), so that "clear in" names a cell at the claim's own 5%, not one of k
chances at 5% each.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from bnmodels.study import stats
from bnmodels.study.claim import BEST, INTERACTION, OPTIMUM, TREND, Claim
from bnmodels.study.convergence import PLATEAU, state_words
from bnmodels.study.evaluate import (
    _arm,
    _arm_runs,
    _better_sign,
    _cells,
    _cv_best,
    _difference,
    _eligible,
    _fmt,
    _level_table,
    _margin,
    run_values,
)
from bnmodels.study.exact import order_interval
from bnmodels.study.metrics import ORDER
from bnmodels.study.prepared import PreparedSweep, label, show

CELL_COLUMNS = [
    "id",
    "cell",
    "estimate",
    "ci_low",
    "ci_high",
    "n",
    "state_compare",
    "state_against",
]


@dataclass(frozen=True)
class Cell:
    name: str  # "depth=4, activation=sigmoid"
    estimate: float
    ci_low: float
    ci_high: float
    n: int
    state_compare: str
    state_against: str
    plateau: bool  # one arm's runs here mostly sit on the constant predictor's plateau
    group: str = ""  # an interaction's cells: "group" or "than" (the comparison group)
    per_seed: tuple = ()  # the cell's per-seed effects, for its simultaneous interval

    def clear(self, expect: str, margin: float) -> bool:
        """The 95% interval excludes no effect (for `same`: lies outside the margin)."""
        if expect == "same":
            return self.ci_low > margin or self.ci_high < -margin
        return self.ci_low > 0 or self.ci_high < 0


def _interval(
    d: np.ndarray, order: bool, confidence: float = stats.CONFIDENCE
) -> tuple[float, float, float, int]:
    if order:
        return (*order_interval(d, confidence), len(stats.finite(d)))
    return stats.t_interval(d, confidence)


def simultaneous(cells: list[Cell], order: bool) -> list[Cell]:
    """The cells with Bonferroni-simultaneous intervals (each at 1 - alpha / k)."""
    k = len(cells)
    if k < 2:
        return cells
    confidence = 1 - (1 - stats.CONFIDENCE) / k
    out = []
    for c in cells:
        if not c.per_seed:
            out.append(c)
            continue
        est, lo, hi, n = _interval(np.asarray(c.per_seed, dtype=float), order, confidence)
        out.append(replace(c, estimate=est, ci_low=lo, ci_high=hi, n=n))
    return out


def _states(sw: PreparedSweep, where: dict, values=None, sign: float = 1.0) -> tuple[str, bool]:
    """The state of the runs an arm selects (a `best` level resolved per seed) in words,
    and whether most of them sit on the plateau."""
    if any(BEST in v for v in where.values()):
        r, _ = _arm_runs(sw, values, where, [], sign)
        keys = set(r["run_key"])
        states = sw.runs.loc[sw.runs["run_key"].isin(keys), "state"]
    else:
        states = sw.runs.loc[sw.select(**where), "state"]
    return state_words(states), bool((states == PLATEAU).mean() > 0.5)


def _pair_cells(
    claim: Claim, sw: PreparedSweep, values, extra: dict, prefix: str, group: str = ""
) -> list[Cell]:
    where = {**dict(claim.where), **extra}
    cells = _cells(claim, sw, where)
    sign = _better_sign(claim.metric, claim)
    a = _arm(sw, values, {**where, **dict(claim.compare)}, cells, sign)
    b = _arm(sw, values, {**where, **dict(claim.against)}, cells, sign)
    both = pd.concat({"a": a, "b": b}, axis=1, join="inner")
    d = _difference(both["a"], both["b"], claim.metric)
    out = []
    groups = d.groupby(level=cells, sort=True) if cells else [((), d)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        cell = dict(zip(cells, key, strict=True))
        est, lo, hi, n = _interval(g.to_numpy(float), claim.metric.scale == ORDER)
        sc, pc = _states(sw, {**where, **dict(claim.compare), **_tuples(cell)}, values, sign)
        sa, pa = _states(sw, {**where, **dict(claim.against), **_tuples(cell)}, values, sign)
        name = ", ".join(x for x in (prefix, label(cell)) if x) or "all"
        per_seed = tuple(g.to_numpy(float).tolist())
        out.append(Cell(name, est, lo, hi, n, sc, sa, pc or pa, group, per_seed))
    return out


def _tuples(cell: dict) -> dict:
    return {k: (v,) for k, v in cell.items()}


def _group_words(f, claim: Claim, sw: PreparedSweep) -> str:
    """An interaction group's name, unless its cells already name its keys."""
    inner = set(_cells(claim, sw, {**dict(claim.where), **dict(f)}))
    return ", ".join(
        f"{k}={show(v[0])}" if len(v) == 1 else f"{k} in {', '.join(map(show, v))}"
        for k, v in f
        if k not in inner
    )


def _optimum_cells(claim: Claim, sw: PreparedSweep, values) -> list[Cell]:
    key, sign = claim.along, _better_sign(claim.metric, claim)
    r = sw.runs.loc[sw.select(**dict(claim.where)), ["seed", key, "diverged", "run_key"]].copy()
    r["value"] = values.reindex(r["run_key"]).to_numpy() * sign
    levels = _eligible(r, key)
    if len(levels) < 3:
        return []
    table = _level_table(r, key)
    best = _cv_best(table, levels[1:-1], 1.0)
    at_best = np.array([table.loc[s, best[s]] for s in table.index])
    chosen = tuple(dict.fromkeys(best.tolist()))
    sb, pb = _states(sw, {**dict(claim.where), key: chosen})
    out = []
    for lv in (levels[0], levels[-1]):
        d = table[lv].to_numpy() - at_best
        est, lo, hi, n = stats.t_interval(d)
        se, pe = _states(sw, {**dict(claim.where), key: (lv,)})
        name = f"{key}={show(lv)} vs the best {key}"
        out.append(Cell(name, est, lo, hi, n, se, sb, pe or pb, "", tuple(d.tolist())))
    return out


def claim_cells(claim: Claim, sw: PreparedSweep) -> list[Cell]:
    """The claim's effect in each cell it averages over (its scale, as the estimate), with
    intervals simultaneous over the claim's cells."""
    return simultaneous(_claim_cells(claim, sw), claim.metric.scale == ORDER)


def _claim_cells(claim: Claim, sw: PreparedSweep) -> list[Cell]:
    values = run_values(claim, sw)
    if claim.kind == OPTIMUM:
        return _optimum_cells(claim, sw, values)
    if claim.kind == TREND:
        kept = dict(claim.where).get(claim.along)
        levels = [lv for lv in sw.axes[claim.along] if not kept or lv in kept]
        return [
            c
            for lv in levels
            for c in _pair_cells(
                claim, sw, values, {claim.along: (lv,)}, f"{claim.along}={show(lv)}"
            )
        ]
    if claim.kind == INTERACTION:
        return [
            c
            for f, name in ((claim.group, "group"), (claim.than, "than"))
            for c in _pair_cells(claim, sw, values, dict(f), _group_words(f, claim, sw), name)
        ]
    return _pair_cells(claim, sw, values, {}, "")


def _listed(claim: Claim, cells: list[Cell], limit: int = 4) -> str:
    shown = "; ".join(f"{c.name} ({_fmt(claim.metric, c.estimate)})" for c in cells[:limit])
    return shown + (f" and {len(cells) - limit} more" if len(cells) > limit else "")


def _interaction_words(claim: Claim, cells: list[Cell]) -> str:
    """An interaction's cells are the pair's own effect in each group: said as such, the
    comparison group apart (its cells are the baseline of the contrast, not its evidence)."""
    parts = []
    for group, name in (("group", "in the group"), ("than", "in the comparison group")):
        mine = [c for c in cells if c.group == group]
        if not mine:
            continue
        clear = [c for c in mine if c.clear("lower", 0.0)]
        text = f"the pair's own effect {name}: " + _listed(claim, mine)
        text += (
            f" (interval clear of 0 in {len(clear)} of {len(mine)})"
            if clear
            else " (no interval clear of 0)"
        )
        parts.append(text)
    return "; ".join(parts)


def where_words(claim: Claim, cells: list[Cell]) -> str:
    """Where the effect lives, in words, for a claim that averages over cells ('' else);
    "clear" reads the simultaneous intervals."""
    if len(cells) < 2:
        return ""
    if claim.kind == INTERACTION:
        return _interaction_words(claim, cells)
    margin = _margin(claim) or 0.0
    clear = [c for c in cells if c.clear(claim.expect, margin)]
    if not clear:
        if claim.expect == "same":
            return "no cell's simultaneous interval lies wholly outside the margin"
        return "no cell's simultaneous interval excludes no effect"
    overall = np.nanmean([c.estimate for c in cells])
    against = [c for c in clear if claim.expect != "same" and c.estimate * overall < 0]
    clear = [c for c in clear if c not in against]
    words = ""
    if clear:
        lead = "outside the margin in " if claim.expect == "same" else "clear in "
        words = lead + _listed(claim, clear)
    if against:
        words += ("; " if words else "") + "the other way in " + _listed(claim, against, 9)
    rest = [c for c in cells if c not in clear and c not in against]
    if rest:
        words += "; not in " + "; ".join(c.name for c in rest[:4])
        words += f" and {len(rest) - 4} more" if len(rest) > 4 else ""
    if clear and all(c.plateau for c in clear):
        words += " — all of it where one arm ends on the constant predictor's plateau"
    return words


def cells_frame(rows: list[tuple[str, list[Cell]]]) -> pd.DataFrame:
    """reports/claim_cells.csv: one row per claim and cell."""
    out = [
        {
            "id": cid,
            "cell": c.name,
            "estimate": c.estimate,
            "ci_low": c.ci_low,
            "ci_high": c.ci_high,
            "n": c.n,
            "state_compare": c.state_compare,
            "state_against": c.state_against,
        }
        for cid, cells in rows
        for c in cells
    ]
    return pd.DataFrame(out, columns=CELL_COLUMNS)
