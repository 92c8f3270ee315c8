"""The report's "Does it transfer?" table: each question the claims ask (their
`question:`), one column per data set it was asked on, the verdict (or an exploratory
claim's reading) and the effect with its interval side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bnmodels.report.markdown import VERDICT_MARK, md_table
from bnmodels.study.evaluate import ClaimResult
from bnmodels.study.prepared import PreparedSweep

FOR = ("supported", "consistent")
AGAINST = ("not supported", "inconsistent")


def _datasets(r: ClaimResult, sweeps: Mapping[str, PreparedSweep]) -> str:
    sw = sweeps[r.claim.sweep]
    runs = sw.runs[sw.select(**dict(r.claim.where))]
    return ", ".join(sorted(map(str, runs["dataset"].unique())))


def _side(verdict: str) -> str:
    return "for" if verdict in FOR else "against" if verdict in AGAINST else "open"


def transfer_markdown(results: Sequence[ClaimResult], sweeps: Mapping[str, PreparedSweep]) -> str:
    """The section, or "" when no claim names a question."""
    asked = [r for r in results if r.claim.question]
    if not asked:
        return ""
    questions = list(dict.fromkeys(r.claim.question for r in asked))
    data = list(dict.fromkeys(_datasets(r, sweeps) for r in asked))
    cell = {(r.claim.question, _datasets(r, sweeps)): r for r in asked}
    rows = []
    differ = []
    for q in questions:
        row = [q]
        for d in data:
            r = cell.get((q, d))
            row.append(f"{VERDICT_MARK[r.verdict]}: {r.effect} (`{r.claim.id}`)" if r else "—")
        rows.append(row)
        sides = {_side(r.verdict) for r in asked if r.claim.question == q}
        if len(sides) > 1:
            differ.append(
                f"- {q}: "
                + "; ".join(
                    f"{_datasets(r, sweeps)} {r.verdict}" for r in asked if r.claim.question == q
                )
            )
    out = [
        "## Does it transfer?",
        "",
        "The same question asked on the course's generated data and on real data (each "
        "claim judged as in the claims section: primary claims with Holm-corrected verdicts, "
        "exploratory ones with readings):",
        "",
        md_table(["Question", *data], rows),
        "",
    ]
    if differ:
        out += ["Where the answer differs between data sets:", "", *differ, ""]
    else:
        out += ["No question gets a different answer on different data.", ""]
    return "\n".join(out)
