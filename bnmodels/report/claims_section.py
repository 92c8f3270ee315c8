"""The report's claims section: a first screen in plain words, then the primary and the
exploratory claims as tables, then how each claim was tested and what the numbers say."""

from __future__ import annotations

import math
from collections.abc import Sequence

from bnmodels.report.markdown import VERDICT_HINT, VERDICT_MARK, md_table
from bnmodels.study import convergence, stats
from bnmodels.study.exact import format_p, needed_agreeing
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
    """The smallest effect the claim's own test detects at its level, in its terms."""
    if r.claim.metric.scale == "order":
        return "— (±1 scores: see seeds needed)"
    if not math.isfinite(r.mde):
        return "no effect can reach it" if r.mde == math.inf else "—"
    m = r.claim.metric
    if m.scale == "log":
        return f"±{_ratio_words(r.mde)}"
    return f"±{r.mde * m.shown_scale:.3g} {m.unit}".rstrip()


def _ratio_words(x: float) -> str:
    """A log ratio's size in plain terms: a percentage, or a factor past 10x."""
    ratio = math.exp(abs(x))
    return f"{100 * (ratio - 1):.0f}%" if ratio < 10 else f"{ratio:.3g}x"


def _needed(r: ClaimResult) -> str:
    return f"{r.needed}/{r.n}" if r.needed is not None else f"none of {r.n} suffices"


SCOPE_WORDS = {
    convergence.TRAINABILITY: " — about leaving the plateau within the budget, not about the "
    "error reached",
    convergence.ON_PLATEAU: " — measured where one arm never left the plateau",
    convergence.SPEED: " — about speed",
    convergence.STABLE: " — a stable effect (some runs not shown converged)",
}


def _plain(r: ClaimResult) -> str:
    """One line for a student, in the tables' own words: the verdict (or an exploratory
    claim's reading), what it is about, the effect, the seeds, where it lives."""
    found = VERDICT_MARK[r.verdict]
    if r.scope.kind == convergence.UNDECIDED:
        found += " — " + r.scope.note.split(":")[0]
    else:
        found += SCOPE_WORDS.get(r.scope.kind, "")
    where = f"; {r.where}" if r.where else ""
    effect = r.effect + (" (net share of seeds)" if r.claim.metric.scale == "order" else "")
    return (
        f"- **{_sentence(r.claim.says)}** — {found}. Effect {effect}; {r.k_agree} of {r.n} "
        f"seeds agree{where}. `{r.claim.sweep}`, {r.budget}."
    )


def _table(results: Sequence[ClaimResult], primary: bool) -> str:
    header = [
        "Claim",
        "Source",
        "Comparison (paired by seed), sweep",
        "Expected",
        "Effect [95% CI]; where it lives",
        "Seeds agreeing (needed at equal sizes)",
        "p exact (Holm)" if primary else "p exact (uncorrected)",
        "Detectable at its level (80% power)",
        "Verdict" if primary else "Reading (not a verdict)",
    ]
    body = [
        [
            f"`{r.claim.id}`",
            r.claim.source or "—",
            f"{r.short}; `{r.claim.sweep}`",
            _expect_words(r),
            r.effect + (f"; {r.where}" if r.where else ""),
            f"{r.k_agree}/{r.n} ({_needed(r)})",
            f"{format_p(r.p, r.n)} ({format_p(r.p_holm, r.n)})" if primary else format_p(r.p, r.n),
            _mde(r),
            VERDICT_MARK[r.verdict] + _scope_mark(r),
        ]
        for r in results
    ]
    return md_table(header, body)


def _confirmation(r: ClaimResult, family: int) -> str:
    """What a confirmatory sweep (new seeds, the claim committed before them) must show."""
    c = r.claim
    level = stats.ALPHA / max(1, family + 1)
    n = max(r.n, 10)
    need = needed_agreeing(n, level)
    want = {
        "lower": "a negative effect",
        "higher": "a positive effect",
        "same": f"every seed within the margin ({_expect_words(r)})",
        "minimum": "both edges worse than the best level between them",
        "maximum": "both edges worse than the best level between them",
    }[c.expect]
    seeds = f"{need} of {n} fresh seeds" if need else f"more than {n} fresh seeds"
    return f"- `{c.id}`: {want} in {seeds} (level {level:.2g}: a primary family of {family + 1})"


def claims_markdown(results: Sequence[ClaimResult], not_judged: Sequence[str] = ()) -> str:
    """The first screen, the claims tables (primary, exploratory), then each claim's test."""
    if not results and not not_judged:
        return "No claims in params.yaml (see docs/claims.md: writing a claim)."
    primary = [r for r in results if r.claim.primary]
    exploratory = [r for r in results if not r.claim.primary]
    out = ["In plain words (the primary claims first):", ""]
    out += [_plain(r) for r in (*primary, *exploratory)]
    out += ["", "![Every claim's effect and interval](figures/claims_forest.png)"]
    if primary:
        out += [
            "",
            "### Primary claims (fixed before their runs existed: registry.yaml; Holm over "
            f"these {len(primary)})",
            "",
            _table(primary, True),
            "",
            "Each primary claim's seeds, one point per seed (its paired effect):",
            "",
            "![Per-seed effects of the primary claims](figures/claims_per_seed.png)",
        ]
    if exploratory:
        out += [
            "",
            "### Exploratory claims (not pre-registered: readings, not verdicts)",
            "",
            "Written or changed after their runs existed, or never marked `primary: true`: "
            "their p values are not corrected (Holm cannot undo choosing a claim after seeing "
            f"the data), and they are read at {stats.ALPHA:g} as *consistent*, *inconsistent* "
            "or *undecided*, never *supported*.",
            "",
            _table(exploratory, False),
            "",
            "What a confirmatory sweep (fresh seeds; the claim committed, and `bnmodels "
            "registry` run, before the sweep's runs exist) would have to show:",
            "",
            *(_confirmation(r, len(primary)) for r in exploratory),
        ]
    out += ["", "How each claim is tested, and what the numbers say:", ""]
    for r in results:
        family = (
            f"Holm-corrected within the primary family {format_p(r.p_holm, r.n)}"
            if r.claim.primary
            else "exploratory: not corrected"
        )
        text = (
            f"- **`{r.claim.id}`**: {r.comparison}. n = {r.n} seeds"
            + (f" ({r.n_dropped} values of diverged runs left out)" if r.n_dropped else "")
            + (
                f" ({r.n_failed} compared runs failed: diverged, exploded or collapsed)"
                if r.n_failed
                else ""
            )
            + f", {r.k_agree} agreeing; exact p {format_p(r.p, r.n)}, {family}; its level "
            + f"{r.level:.2g} needs {_needed(r)} seeds agreeing (if all of one size); "
            + "detectable there at 80% "
            + f"power: {_mde(r)}. "
            + r.detail
        )
        if r.where:
            text += f" Per cell (simultaneous 95% intervals): {r.where}."
        if r.scope.note:
            text += f" **Scope: {r.scope.kind}.** {_sentence(r.scope.note)}."
        if r.verdict in VERDICT_HINT and r.claim.hint:
            text += f" {VERDICT_HINT[r.verdict]} {r.claim.hint}"
        out.append(text)
    if not_judged:
        out += ["", "Not judged (their sweeps were not run): " + ", ".join(not_judged) + "."]
    return "\n".join(out)


def calibration_markdown(cal) -> str:
    """The calibration's section: per claim kind, false decisions in worlds with no effect
    and power at the printed detectable effect (study/calibration.py)."""
    out = ["### Calibration: worlds with no effect, and with the printed detectable one", ""]
    if cal is None or not len(cal):
        return "\n".join(
            out
            + [
                "No configuration has the 40 seeds (4 replicas on each of 10 draws) the "
                "calibration needs (params.yaml: the `aa_control` sweep), so the verdicts are "
                "not calibrated."
            ]
        )
    ok = bool(cal["passes"].all())
    out += [
        "Each trial relabels replicas of one configuration of the `aa_control` sweep (runs "
        "on the same draw of the data stand in for one seed, as a real pair shares its "
        "data) as the arms, cells or levels of six claims, one of each kind, and judges them "
        "with the report's own verdict path as one primary family (Holm over six): there is "
        "no true effect, so any decision is false (for the equivalence, whose compare arm "
        "is shifted by exactly its margin, any *supported*). Then, per kind, the effect the "
        "pipeline prints as detectable in that world is planted, and the share of trials "
        "that call it supported at the claim's level is its power (80% when the printed "
        f"figure is honest). **The calibration {'passes' if ok else 'FAILS'}**: "
        + (
            "no exact binomial test (at 1%) finds a false rate above its nominal value or a "
            "power below 80%."
            if ok
            else "see the rows marked no."
        ),
        "",
        md_table(
            [
                "Kind",
                "Metric",
                "Configurations",
                "Trials",
                "False decisions",
                "Nominal",
                "Power at the printed effect (trials)",
                "Passes",
            ],
            [
                [
                    r.kind,
                    f"`{r.metric}`",
                    r.configurations,
                    r.trials,
                    f"{100 * r.false_rate:.1f}%",
                    f"{100 * r.nominal:.1f}%",
                    "—"
                    if not math.isfinite(r.power)
                    else f"{100 * r.power:.0f}% ({r.power_trials})",
                    "yes" if r.passes else "**no**",
                ]
                for r in cal.itertuples()
            ],
        ),
    ]
    return "\n".join(out)
