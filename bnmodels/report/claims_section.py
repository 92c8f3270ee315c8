"""The report's claims section: a first screen in plain words, then the primary and the
exploratory claims as tables, then how each claim was tested and what the numbers say."""

from __future__ import annotations

import math
from collections.abc import Sequence

from bnmodels.report.markdown import VERDICT_HINT, VERDICT_MARK, md_table
from bnmodels.study import convergence, stats
from bnmodels.study.exact import format_p
from bnmodels.study.verdicts import ClaimResult


def _linear_margin(metric, margin: float) -> str:
    """A linear metric's margin in the units its effects are shown in (accuracy: pp)."""
    unit = f" {metric.unit}" if metric.unit else ""
    return f"{margin * metric.shown_scale:g}{unit}"


def _expect_words(r: ClaimResult) -> str:
    c = r.claim
    if c.kind == "optimum":
        return f"an interior {c.expect}"
    if c.expect == "same":
        m = (
            f"{100 * c.margin:g}%"
            if c.metric.scale == "log"
            else _linear_margin(c.metric, c.margin)
        )
        return f"same, within ±{m}"
    return f"{c.expect} (effect {'< 0' if c.expect == 'lower' else '> 0'})"


def _sentence(text: str) -> str:
    """`text` as a sentence: capitalised, unless it opens with a key=value (lr=0.1)."""
    first = text.split(" ", 1)[0]
    return text if "=" in first else text[:1].upper() + text[1:]


def _scope_mark(r: ClaimResult) -> str:
    """The verdict's qualifier: what the runs let it decide, when not a converged error."""
    return "" if r.scope.kind == convergence.DECIDED else f" ({r.scope.kind})"


def _mde(r: ClaimResult) -> str:
    """The smallest detectable effect, in the claim's terms."""
    if not math.isfinite(r.mde):
        return "none reachable" if r.mde == math.inf else "—"
    m = r.claim.metric
    if m.scale == "log":
        return f"±{100 * math.expm1(r.mde):.0f}%"
    if m.scale == "order":
        return f"±{r.mde:.2f}"
    return f"±{r.mde * m.shown_scale:.3g} {m.unit}".rstrip()


def _plain(r: ClaimResult) -> str:
    """One line for a student: what was found, where, under which budget."""
    found = {
        stats.SUPPORTED: "holds",
        stats.NOT_SUPPORTED: "does not hold: "
        + (
            "the arms differ by more than the margin"
            if r.claim.expect == "same"
            else "the effect goes the other way"
        ),
        stats.INCONCLUSIVE: "not established",
    }[r.verdict]
    if r.verdict == stats.INCONCLUSIVE and r.scope.kind == convergence.UNDECIDED:
        found = "not decided: more training could change it"
    where = f"; {r.where}" if r.where else ""
    if r.claim.kind == "interaction" and len(r.cells) > 2:  # each group's own effect too
        where += "; " + r.detail.rstrip(".")
    effect = r.effect + (" (net share of seeds)" if r.claim.metric.scale == "order" else "")
    scope = {
        convergence.TRAINABILITY: " (about leaving the plateau, not the error reached)",
        convergence.ON_PLATEAU: " (measured where one arm never left the plateau)",
        convergence.SPEED: " (about speed)",
    }.get(r.scope.kind, "")
    return (
        f"- **{_sentence(r.claim.says)}** — {found}{scope}: {effect}, "
        f"{r.k_agree} of {r.n} seeds agree{where}. `{r.claim.sweep}`, "
        f"{r.budget}."
    )


def _table(results: Sequence[ClaimResult]) -> str:
    header = [
        "Claim",
        "Source",
        "Comparison (paired by seed), sweep",
        "Expected",
        "Effect [95% CI]; where it lives",
        "Seeds agreeing",
        "p exact (Holm)",
        "Detectable (80% power)",
        "Verdict",
    ]
    body = [
        [
            f"`{r.claim.id}`",
            r.claim.source or "—",
            f"{r.short}; `{r.claim.sweep}`",
            _expect_words(r),
            r.effect + (f"; {r.where}" if r.where else ""),
            f"{r.k_agree}/{r.n}",
            f"{format_p(r.p, r.n)} ({format_p(r.p_holm, r.n)})",
            _mde(r),
            VERDICT_MARK[r.verdict] + _scope_mark(r),
        ]
        for r in results
    ]
    return md_table(header, body)


def claims_markdown(results: Sequence[ClaimResult], not_judged: Sequence[str] = ()) -> str:
    """The first screen, the claims tables (primary, exploratory), then each claim's test."""
    if not results and not not_judged:
        return "No claims in params.yaml (see docs/claims.md: writing a claim)."
    primary = [r for r in results if r.claim.primary]
    exploratory = [r for r in results if not r.claim.primary]
    out = ["In plain words (the notes' claims first):", ""]
    out += [_plain(r) for r in (*primary, *exploratory)]
    if primary:
        out += [
            "",
            "### The notes' claims (primary: fixed before the data, Holm over these)",
            "",
            _table(primary),
        ]
    if exploratory:
        out += [
            "",
            "### Exploratory claims (added after seeing data; Holm over these, apart)",
            "",
            _table(exploratory),
        ]
    out += ["", "How each claim is tested, and what the numbers say:", ""]
    for r in results:
        text = (
            f"- **`{r.claim.id}`**: {r.comparison}. n = {r.n} seeds"
            + (f" ({r.n_dropped} values of diverged runs left out)" if r.n_dropped else "")
            + (
                f" ({r.n_failed} diverged runs counted as failures, at the worst value)"
                if r.n_failed
                else ""
            )
            + f", {r.k_agree} agreeing; exact p {format_p(r.p, r.n)}, Holm-corrected within "
            + f"its family {format_p(r.p_holm, r.n)}; detectable at 80% power: {_mde(r)}. "
            + r.detail
        )
        if r.where:
            text += f" Per cell: {r.where}."
        if r.scope.note:
            text += f" **Scope: {r.scope.kind}.** {_sentence(r.scope.note)}."
        if r.verdict in VERDICT_HINT and r.claim.hint:
            text += f" {VERDICT_HINT[r.verdict]} {r.claim.hint}"
        out.append(text)
    if not_judged:
        out += ["", "Not judged (their sweeps were not run): " + ", ".join(not_judged) + "."]
    return "\n".join(out)


def calibration_markdown(cal) -> str:
    """The A/A control's section: false 'supported' rates per metric (study/calibration.py)."""
    out = ["### Calibration: comparisons with no true effect (A/A)", ""]
    if not len(cal):
        return "\n".join(
            out
            + [
                "No configuration has the 20 seeds an A/A split into two arms of 10 needs "
                "(params.yaml: the `aa_control` sweep), so the verdicts are not calibrated."
            ]
        )
    out += [
        "Each trial splits one configuration's 20 seeds at random into two arms of 10, "
        "pairs them at random and runs the whole verdict pipeline on them (the metric, "
        "failures, the exact test, the verdict, the guard), as a family of one, the worst "
        "case. A claim's direction is fixed beforehand: its false 'supported' rate is one "
        f"direction's (nominal {stats.ALPHA / 2:g}, at most {stats.ALPHA:g}); either way "
        f"(nominal {stats.ALPHA:g}) is what a claim written after seeing the sign would get.",
        "",
        md_table(
            ["Metric", "Kind", "Configurations", "Trials", "False 'supported'", "Either way"],
            [
                [
                    f"`{r.metric}`",
                    r.kind,
                    r.configurations,
                    r.trials,
                    f"{100 * r.false_supported:.1f}%",
                    f"{100 * r.false_either_way:.1f}%",
                ]
                for r in cal.itertuples()
            ],
        ),
    ]
    return "\n".join(out)
