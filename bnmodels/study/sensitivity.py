"""How each primary verdict depends on the choices behind it: the budget (the claim read at
80% of every run's epochs), the family (every claim of the report as one Bonferroni
family, or none at all) and, for a same-claim, its margin (halved, doubled).

A verdict that flips under a mild change of one of these is worth less than its table
row says; the report shows the table beside the primary claims.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

from bnmodels.study import stats
from bnmodels.study.claim import OPTIMUM, SAME
from bnmodels.study.evaluate import KINDS, ClaimResult, has_path, run_values
from bnmodels.study.prepared import PreparedSweep
from bnmodels.study.verdicts import exact_p

COLUMNS = ("as judged", "80% of the budget", "all claims, one family", "uncorrected")
MARGINS = (0.5, 2.0)  # a same-claim's margin times these


def _verdict(r: ClaimResult, test: stats.Test, p: float, side, factor: float) -> str:
    expect = "higher" if r.claim.kind == OPTIMUM else r.claim.expect
    return stats.verdict(expect, test, min(1.0, p * factor), side)


def sensitivity(
    results: Sequence[ClaimResult], sweeps: Mapping[str, PreparedSweep]
) -> list[dict[str, str]]:
    """One row per primary claim: its verdict under each choice (before the scope's
    qualifier, which the claims table gives)."""
    total = len(results)
    rows = []
    for r in (r for r in results if r.claim.primary):
        sw, c = sweeps[r.claim.sweep], r.claim
        holm = r.p_holm / r.p if r.p > 0 and math.isfinite(r.p_holm) else 1.0
        kind = KINDS[c.kind]
        full = kind(c, sw, run_values(c, sw))
        p, side = exact_p(c, full)
        row = {"claim": c.id, "as judged": r.verdict}
        if has_path(c.metric):
            early = kind(c, sw, run_values(c, sw, 0.8))
            pe, se = exact_p(c, early)
            row["80% of the budget"] = _verdict(r, early.test, pe, se, holm)
        else:
            row["80% of the budget"] = "—"
        row["all claims, one family"] = _verdict(r, full.test, p, side, total)
        row["uncorrected"] = _verdict(r, full.test, p, side, 1.0)
        for f in MARGINS:
            if c.expect != SAME:
                row[f"margin x{f:g}"] = "—"
                continue
            wider = replace(c, margin=c.margin * f)
            pm, sm = exact_p(wider, full)
            row[f"margin x{f:g}"] = _verdict(r, full.test, pm, sm, holm)
        rows.append(row)
    return rows
