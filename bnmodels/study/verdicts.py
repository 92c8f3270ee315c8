"""The verdicts: every claim's evidence (study/evaluate.py) tested exactly, corrected for
the family it belongs to, qualified by what its runs let it decide, and located in the
cells it averages over.

The p value is the exact sign-flip test's over the claim's per-seed numbers (no p below
what n seeds can give); Holm's correction runs within the primary family (claims fixed
before their runs existed: study/registry.py). Exploratory claims get a reading
(consistent, inconsistent, undecided) on their uncorrected p, never a verdict. The
interval stays the t-interval of the per-seed numbers (for censored times' ternary scores,
the exact interval of their net share). A verdict is then void where the runs cannot
decide it (study/convergence.py: the guard).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bnmodels.study import convergence, exact, stats
from bnmodels.study.cells import claim_cells, where_words
from bnmodels.study.claim import OPTIMUM, SAME, Claim
from bnmodels.study.evaluate import (
    KINDS,
    ClaimResult,
    Evidence,
    _counts_failures,
    _fmt,
    _margin,
    compared_runs,
    evidence,
    has_path,
    run_values,
    short_words,
)
from bnmodels.study.metrics import ORDER
from bnmodels.study.prepared import PreparedSweep

__all__ = ["ClaimResult", "evaluate"]


def effect_path(claim: Claim, sw: PreparedSweep) -> np.ndarray:
    """The claim's estimate as it stood at each of `convergence.PATH` (fractions of every
    run's own budget, the last fifth); empty for a metric without a path."""
    if not has_path(claim.metric):
        return np.array([])
    kind = KINDS[claim.kind]
    return np.array(
        [kind(claim, sw, run_values(claim, sw, f)).test.estimate for f in convergence.PATH]
    )


def claim_scope(
    claim: Claim, sw: PreparedSweep, runs: pd.DataFrame, verdict: str
) -> convergence.Scope:
    """What the compared `runs` let the claim decide (convergence.scope). The effect's path
    over the last fifth is only read for a decided verdict (the guard undoes nothing
    else)."""
    m = claim.metric
    decided = verdict in (stats.SUPPORTED, stats.NOT_SUPPORTED)
    path = effect_path(claim, sw) if decided else np.array([])
    # a measure over training, or one network evaluated two ways (precise BN's gap):
    # neither is a final error that more epochs would move
    mechanism = m.reducer in ("mean", "derived")
    keys = [k for k in sw.axes] or ["dataset"]
    return convergence.scope(
        runs,
        keys,
        sw.budget,
        m.censored,
        mechanism,
        convergence.Movement(verdict, claim.expect, _margin(claim) or 0.0, path),
        flat_measure=m.column.startswith("probe_"),
    )


def exact_p(claim: Claim, e: Evidence) -> tuple[float, bool | None]:
    """The exact sign-flip p of the claim's per-seed numbers, and for `same` which test it
    is: the smaller of the equivalence test's and the difference test's (the effect lies
    outside the margin), so one p and one rule decide both ways; an optimum needs both
    edges worse, so it takes the larger p."""
    if not e.per_seed:
        return math.nan, None
    if claim.expect == SAME:
        within = exact.sign_flip_tost_p(e.per_seed[0], _margin(claim))
        outside = exact.difference_p(e.per_seed[0], _margin(claim))
        return min(within, outside), within <= outside
    return max(exact.sign_flip_p(x) for x in e.per_seed), None


def agreeing(claim: Claim, e: Evidence) -> int:
    """Seeds whose own numbers agree with the claim (an optimum: both edges worse)."""
    if not e.per_seed:
        return 0
    if claim.kind == OPTIMUM:
        rows = np.vstack(e.per_seed)
        return int((np.isfinite(rows).all(axis=0) & (rows > 0).all(axis=0)).sum())
    return exact.k_agree(e.per_seed[0], claim.expect, _margin(claim))


def deciding(e: Evidence) -> np.ndarray:
    """The per-seed numbers that decide the claim: its one row, or an optimum's weaker
    edge (the smaller mean: the edge whose p is the claim's)."""
    means = [stats.finite(x).mean() if stats.finite(x).size else -math.inf for x in e.per_seed]
    return e.per_seed[int(np.argmin(means))]


def detectable(claim: Claim, e: Evidence, level: float) -> float:
    """The smallest effect the claim's own exact test detects with 80% power at `level`
    (the level it faces), with these seeds and their spread (exact.detectable); NaN for
    censored times' +-1 scores, where only the number of agreeing seeds means anything."""
    if not e.per_seed or claim.metric.scale == ORDER:
        return math.nan
    if claim.kind == OPTIMUM:  # both edges must be found: each with sqrt(0.8), the harder
        return max(exact.detectable(x, level, math.sqrt(exact.POWER)) for x in e.per_seed)
    return exact.detectable(deciding(e), level)


def family_level(primary: bool, family_size: int) -> float:
    """The level a claim faces: alpha over its family's size at Holm's first step (the
    primary family); alpha itself for an exploratory reading."""
    return stats.ALPHA / max(1, family_size) if primary else stats.ALPHA


def _decision(c: Claim, e: Evidence, t: stats.Test, p: float, side, level: float) -> str:
    """The verdict before the scope, with 'cannot be decided' where no effect could have
    reached the claim's level with these seeds (or, for `same`, where a true zero would
    be shown inside the margin less than 80% of the time)."""
    expect = "higher" if c.kind == OPTIMUM else c.expect  # optimum: edges worse
    verdict = stats.verdict(expect, t, p, side)
    if verdict != stats.INCONCLUSIVE or not e.per_seed:
        return verdict
    n = stats.finite(deciding(e)).size
    if exact.needed_agreeing(n, level) is None:
        return stats.UNDECIDABLE
    if c.expect == SAME and exact.equivalence_power(e.per_seed[0], _margin(c), level) < 0.8:
        return stats.UNDECIDABLE
    return verdict


@dataclass(frozen=True)
class Decision:
    """A claim decided: its evidence, exact p (and for `same` which test it is), its
    Holm-corrected p (NaN: exploratory), the level it faces, its verdict (an exploratory
    claim's reading) and scope, and the runs its test contrasts."""

    claim: Claim
    evidence: Evidence
    p: float
    equivalent: bool | None
    p_holm: float
    level: float
    verdict: str
    scope: convergence.Scope
    runs: pd.DataFrame


def decide(claims: Sequence[Claim], sweeps: Mapping[str, PreparedSweep]) -> list[Decision]:
    """The verdict path alone, for every claim whose sweep is present: evidence, exact p,
    Holm's correction within the primary family (the exploratory claims stay uncorrected
    and get a reading, not a verdict), the scope's guard. The A/A calibration runs exactly
    this (study/calibration.py)."""
    judged = [(c, evidence(c, sweeps[c.sweep])) for c in claims if c.sweep in sweeps]
    tested = [exact_p(c, e) for c, e in judged]
    p_exact = [p for p, _ in tested]
    primary = [c.primary for c, _ in judged]
    p_holm = exact.holm_primary(p_exact, primary)
    family = sum(1 for c, p in zip(primary, p_exact, strict=True) if c and math.isfinite(p))
    out = []
    for (c, e), (pe, side), ph in zip(judged, tested, p_holm, strict=True):
        sw = sweeps[c.sweep]
        runs = compared_runs(c, sw)
        level = family_level(c.primary, family)
        p_read = (ph if math.isfinite(ph) else 1.0) if c.primary else pe
        p_read = p_read if math.isfinite(p_read) else 1.0
        verdict = _decision(c, e, e.test, p_read, side, level)
        scope = claim_scope(c, sw, runs, verdict)
        if not scope.decides and verdict in (stats.SUPPORTED, stats.NOT_SUPPORTED):
            verdict = stats.INCONCLUSIVE
        if not c.primary:
            verdict = stats.READING.get(verdict, verdict)
        out.append(Decision(c, e, pe, side, float(ph), level, verdict, scope, runs))
    return out


def evaluate(claims: Sequence[Claim], sweeps: Mapping[str, PreparedSweep]) -> list[ClaimResult]:
    """Every claim whose sweep is present, decided (`decide`) and described: the effect in
    words, the seeds agreeing and needed, the detectable effect, the cells."""
    out = []
    for d in decide(claims, sweeps):
        c, e, t = d.claim, d.evidence, d.evidence.test
        sw = sweeps[c.sweep]
        cells = tuple(claim_cells(c, sw))
        n = stats.finite(deciding(e)).size if e.per_seed else 0
        out.append(
            ClaimResult(
                claim=c,
                estimate=t.estimate,
                ci_low=t.ci_low,
                ci_high=t.ci_high,
                p=d.p,
                p_holm=d.p_holm,
                n=t.n,
                k_agree=agreeing(c, e),
                mde=detectable(c, e, d.level),
                n_dropped=e.n_dropped,
                n_failed=_failures(c, d.runs),
                verdict=d.verdict,
                scope=d.scope,
                comparison=e.comparison,
                short=short_words(c),
                effect=_fmt(c.metric, t.estimate, t.ci_low, t.ci_high),
                detail=e.detail,
                budget=sw.budget,
                cells=cells,
                where=where_words(c, list(cells)),
                level=d.level,
                needed=exact.needed_agreeing(n, d.level) if n else None,
                per_seed=tuple(deciding(e).tolist()) if e.per_seed else (),
            )
        )
    return out


def _failures(c: Claim, runs) -> int:
    """Compared runs that failed to train (diverged, exploded or collapsed), counted
    where the claim's metric is a loss or accuracy that a failure makes worse."""
    if not _counts_failures(c.metric):
        return 0
    return int(runs["state"].isin(convergence.FAILED).sum())
