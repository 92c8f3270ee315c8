"""The verdicts: every claim's evidence (study/evaluate.py) tested exactly, corrected for
the family it belongs to, qualified by what its runs let it decide, and located in the
cells it averages over.

The p value is the exact sign-flip test's over the claim's per-seed numbers (no p below
what n seeds can give); Holm's correction runs within the primary family (the notes'
claims, fixed before the data) and, separately, within the exploratory claims. The
interval stays the t-interval of the per-seed numbers (for censored times' ternary scores,
the exact interval of their net share). A verdict is then void where the runs cannot
decide it (study/convergence.py: the guard).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

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
    claim: Claim, sw: PreparedSweep, runs: pd.DataFrame, verdict: str, path: np.ndarray
) -> convergence.Scope:
    """What the compared `runs` let the claim decide (convergence.scope)."""
    m = claim.metric
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
    )


def exact_p(claim: Claim, e: Evidence) -> float:
    """The exact sign-flip p of the claim's per-seed numbers: two-sided, or the equivalence
    test's for `same`; an optimum needs both edges worse, so it takes the larger p."""
    if not e.per_seed:
        return math.nan
    if claim.expect == SAME:
        return exact.sign_flip_tost_p(e.per_seed[0], _margin(claim))
    return max(exact.sign_flip_p(x) for x in e.per_seed)


def agreeing(claim: Claim, e: Evidence) -> int:
    """Seeds whose own numbers agree with the claim (an optimum: both edges worse)."""
    if not e.per_seed:
        return 0
    if claim.kind == OPTIMUM:
        rows = np.vstack(e.per_seed)
        return int((np.isfinite(rows).all(axis=0) & (rows > 0).all(axis=0)).sum())
    return exact.k_agree(e.per_seed[0], claim.expect, _margin(claim))


def detectable(e: Evidence) -> float:
    """The smallest effect 80% power would detect at 5% (two-sided) with these seeds and
    this spread (the widest of an optimum's edges)."""
    mdes = [
        exact.min_detectable_effect(float(np.std(stats.finite(x), ddof=1)), stats.finite(x).size)
        for x in e.per_seed
        if stats.finite(x).size >= 2
    ]
    return max(mdes) if mdes else math.nan


def evaluate(claims: Sequence[Claim], sweeps: Mapping[str, PreparedSweep]) -> list[ClaimResult]:
    """Every claim whose sweep is present, judged: exact p values, Holm's correction within
    the primary family and within the exploratory one, and each claim's scope."""
    judged = [(c, evidence(c, sweeps[c.sweep])) for c in claims if c.sweep in sweeps]
    p_exact = [exact_p(c, e) for c, e in judged]
    p_holm = exact.holm_families(p_exact, [c.primary for c, _ in judged])
    out = []
    for (c, e), pe, ph in zip(judged, p_exact, p_holm, strict=True):
        t = e.test
        expect = "higher" if c.kind == OPTIMUM else c.expect  # optimum: edges worse
        margin = _margin(c) or 0.0
        sw = sweeps[c.sweep]
        runs = compared_runs(c, sw)
        ph = float(ph) if math.isfinite(ph) else 1.0
        verdict = stats.verdict(expect, t, ph, margin)
        scope = claim_scope(c, sw, runs, verdict, effect_path(c, sw))
        cells = tuple(claim_cells(c, sw))
        out.append(
            ClaimResult(
                claim=c,
                estimate=t.estimate,
                ci_low=t.ci_low,
                ci_high=t.ci_high,
                p=pe,
                p_holm=ph,
                n=t.n,
                k_agree=agreeing(c, e),
                mde=detectable(e),
                n_dropped=e.n_dropped,
                n_failed=int(runs["diverged"].sum()) if _counts_failures(c.metric) else 0,
                verdict=verdict if scope.decides else stats.INCONCLUSIVE,
                scope=scope,
                comparison=e.comparison,
                short=short_words(c),
                effect=_fmt(c.metric, t.estimate, t.ci_low, t.ci_high),
                detail=e.detail,
                budget=sw.budget,
                cells=cells,
                where=where_words(c, list(cells)),
            )
        )
    return out
