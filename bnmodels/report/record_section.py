"""The report's record of itself: what was changed after seeing the data (from the
registry, built from git), how each primary verdict depends on its choices, and what the
study cannot tell."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bnmodels.report.markdown import md_table
from bnmodels.study.prepared import PreparedSweep, show
from bnmodels.study.registry import RULES, Registry
from bnmodels.study.sensitivity import COLUMNS, MARGINS


def changes_markdown(
    registry: Registry, claim_ids: Sequence[str], primary: Sequence[str] = ()
) -> str:
    """'Changed after seeing the data': every claim or sweep edited after its sweep had
    results, by commit; then which of today's claims the registry proves were fixed
    before their runs."""
    out = ["## Changed after seeing the data", ""]
    fixed = [cid for cid in claim_ids if cid in registry.claims]
    pre = [cid for cid in fixed if registry.claims[cid].preregistered]
    out.append(
        "From `registry.yaml`, which `bnmodels registry` derives from git: a claim is primary "
        "only if its definition (everything but its words) was committed before its sweep "
        "first had results on any of the seeds it is judged on now. "
        f"{len(pre)} of today's {len(claim_ids)} claims were (the {len(primary)} primary "
        "ones among them: those params.yaml marks `primary: true`, the others exploratory "
        "by choice, to keep the family small); "
        + (
            f"{len(claim_ids) - len(fixed)} are not in the registry (written or edited "
            "since it was made)"
            if len(fixed) < len(claim_ids)
            else "every claim is in the registry"
        )
        + "."
    )
    later = [c for c in registry.changes if c.subject == RULES]
    if registry.rules is not None and later:
        out.append(
            f"The verdict rules (bnmodels/study: run states, the guard, the tests) last "
            f"changed at commit {registry.rules[0]} ({registry.rules[1]}); {len(later)} "
            "commit(s) changed them after the primary claims' runs existed, listed below "
            "as 'verdict rules' in their own words (whether any verdict could move is for "
            "the reader to check there: git has the diff). Before those runs, the rules "
            "were chosen and revised while looking at earlier results."
        )
    elif registry.rules is not None:
        out.append(
            f"The verdict rules (bnmodels/study: run states, the guard, the tests) last "
            f"changed at commit {registry.rules[0]} ({registry.rules[1]}), before the "
            "primary claims' runs; they were chosen and revised while looking at earlier "
            "results (the table below lists what changed after them), not before those."
        )
    if not registry.changes:
        return "\n".join([*out, "", "No claim or sweep was changed after its results existed."])
    by_commit: dict[tuple[str, str], list[str]] = {}
    for c in registry.changes:
        by_commit.setdefault((c.commit, c.date), []).append(f"{c.subject}: {c.what}")
    rows = [[f"`{commit}`", date, "; ".join(items)] for (commit, date), items in by_commit.items()]
    out += ["", md_table(["Commit", "Date", "Changed after the sweep had results"], rows)]
    return "\n".join(out)


def sensitivity_markdown(rows: Sequence[Mapping[str, str]]) -> str:
    if not rows:
        return ""
    header = ["Claim", *COLUMNS, *(f"margin x{f:g}" for f in MARGINS)]
    body = [[f"`{r['claim']}`", *(r[h] for h in header[1:])] for r in rows]
    return "\n".join(
        [
            "### How each primary verdict depends on its choices",
            "",
            "The verdict (before its scope's qualifier) at 80% of every run's budget, with "
            "every claim of the report as one Bonferroni family, with no correction at all, "
            "and for a same-claim with its margin halved or doubled:",
            "",
            md_table(header, body),
        ]
    )


def limits_markdown(sweeps: Mapping[str, PreparedSweep]) -> str:
    """'What this study cannot tell': the nets' widths, the data, the budgets, the seeds,
    read from the runs themselves."""
    datasets, budgets, seeds, wide = set(), set(), set(), {}
    for sw in sweeps.values():
        datasets |= set(sw.runs["dataset"]) if "dataset" in sw.runs else set()
        budgets.add(sw.budget)
        seeds.add(len(sw.seeds))
        widths = sorted(set(sw.runs["width"])) if "width" in sw.runs else []
        if widths != [4]:
            wide[sw.name] = widths
    others = "; ".join(f"`{n}`: {', '.join(map(show, w))}" for n, w in wide.items())
    width = "4 units wide" + (f", except in {others}" if others else "")
    return (
        f"> **What this study cannot tell.** The nets here are {width}, trained on small "
        f"generated data sets ({', '.join(sorted(map(str, datasets)))}: 2-5 features, "
        f"500-1000 rows), with plain SGD at fixed budgets ({', '.join(sorted(budgets))}) and "
        f"{' or '.join(map(str, sorted(seeds)))} seeds a configuration. A verdict holds for "
        "these nets, data and budgets; whether it holds for other data or longer training is "
        "not tested here. Where a verdict says *about leaving the plateau*, it is about "
        "whether a net trains at all within the budget, not about the error it would reach."
    )
