"""The report's section on why BN helps: what the landscape and precise-BN claims say.

The course explains BN by internal covariate shift and gradient scale; Santurkar et al.
(2018) found instead that BN smooths the loss landscape, and Wu and Johnson (2021) that
BN's running statistics cost accuracy at small batches. This section reads the verdicts
of the claims that measure those mechanisms (landscape probes, precise BN) and says, in
generated sentences, which explanation the numbers here favour and where they disagree
with the paper. It writes nothing when no such claim was judged.
"""

from __future__ import annotations

from collections.abc import Sequence

from bnmodels.study.evaluate import ClaimResult

SUPPORTED = "supported"
FOR = (SUPPORTED, "consistent")  # a verdict, or an exploratory claim's reading
AGAINST = ("not supported", "inconsistent")


def _is_probe(r: ClaimResult) -> bool:
    return r.claim.metric.column.startswith("probe_")


def _is_precise(r: ClaimResult) -> bool:
    return r.claim.metric.name == "precise_bn_gap"


def _qualified(r: ClaimResult) -> str:
    """The verdict with what the runs let it decide, when that is not a converged result."""
    return r.verdict if r.scope.kind == "converged" else f"{r.verdict}, {r.scope.kind}"


def _listing(results: Sequence[ClaimResult]) -> str:
    return ", ".join(f"`{r.claim.id}` ({_qualified(r)}; {r.effect})" for r in results)


def _landscape(probes: Sequence[ClaimResult]) -> list[str]:
    supported = [r for r in probes if r.verdict in FOR]
    refuted = [r for r in probes if r.verdict in AGAINST]
    lines = [
        f"**Landscape smoothness (Santurkar et al. 2018).** Of the {len(probes)} landscape "
        f"claims, {len(supported)} point the paper's way, {len(refuted)} the other way and "
        f"{len(probes) - len(supported) - len(refuted)} cannot tell (see each one's verdict "
        "or, for an exploratory claim, its reading)."
    ]
    if probes and len(supported) == len(probes):
        lines.append(
            "Here, as in the paper, BN makes the loss vary less along the gradient and the "
            "gradient change less: the smoothness explanation is consistent with these runs."
        )
    elif supported:
        lines.append(
            "The paper's finding holds here only in part: smoother with BN in "
            + _listing(supported)
            + "; not shown in "
            + _listing([r for r in probes if r.verdict not in FOR])
            + "."
        )
    else:
        lines.append(
            "None of the paper's smoothness effects is shown on these small networks: "
            + _listing(probes)
            + "."
        )
    return lines


def _precise(results: Sequence[ClaimResult]) -> list[str]:
    lines = ["**Running statistics (Wu and Johnson 2021; the notes' batch-size argument).**"]
    for r in results:
        if r.claim.expect == "same":  # an equivalence: the small-batch gap within a margin
            same = (
                f"the running averages cost no more at small batches than at large "
                f"ones (within {100 * r.claim.margin:g}%): the argument does not hold here"
            )
            more = "the running averages cost more at small batches, as argued"
            verdict = same if r.verdict in FOR else more if r.verdict in AGAINST else None
        else:
            costs = "the running averages cost accuracy at small batches, as argued"
            opposite = "the opposite of the argument holds"
            verdict = costs if r.verdict in FOR else opposite if r.verdict in AGAINST else None
        verdict = verdict or "the numbers cannot tell"
        lines.append(f"`{r.claim.id}`: {r.effect}, {_qualified(r)}: {verdict}.")
    return lines


def mechanisms_markdown(results: Sequence[ClaimResult]) -> str:
    """The "Why BN helps" section, or "" when no mechanism claim was judged."""
    probes = [r for r in results if _is_probe(r)]
    precise = [r for r in results if _is_precise(r)]
    if not probes and not precise:
        return ""
    parts = ["## Why BN helps: mechanisms", ""]
    if probes:
        parts += [" ".join(_landscape(probes)), ""]
    if precise:
        parts += [" ".join(_precise(precise)), ""]
    parts.append(
        "These claims measure mechanisms on the same runs as the claims above; the landscape "
        "probes are taken at each epoch's first batch, before its step (SPEC 4), and "
        "precise BN replaces the running statistics by exact train-set ones at the end."
    )
    return "\n".join(parts) + "\n"
