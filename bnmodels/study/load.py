"""The whole of params.yaml: the runs of every sweep and the claims judged on them.

The plan stage validates it all at once, before anything trains (every problem of every
section in one message); the aggregate stage reads the claims. The train and generate
stages read params.yaml through `bnmodels.experiment.params` alone, so that the claims code is
none of their dependencies: editing how claims are judged retrains nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bnmodels.errors import ParamsError
from bnmodels.experiment.checks import ErrorList, read_yaml
from bnmodels.experiment.config import Params
from bnmodels.experiment.params import check
from bnmodels.study.claim import Claim, validate_claims


@dataclass(frozen=True)
class Study:
    params: Params
    claims: dict[str, Claim]  # by id, in file order


def validate_study(raw: Any, file: str = "params.yaml") -> Study:
    """Validate a parsed params file, claims included; ParamsError lists every problem."""
    params, errors = check(raw, file)
    err = ErrorList(file)
    if "claims" not in raw:  # DVC reads the section for the aggregate stage: say so now
        err.raw("claims", "missing section (write `claims: {}` for a study without claims)")
    raw_sweeps = raw.get("sweeps")
    claims = validate_claims(
        raw.get("claims"),
        {name: [r.as_dict() for r in s.runs] for name, s in params.sweeps.items()},
        err,
        known=map(str, raw_sweeps if isinstance(raw_sweeps, dict) else ()),
    )
    for cid, claim in claims.items():  # probes are recorded only where a sweep asks
        sweep = params.sweeps.get(claim.sweep)
        if claim.metric.column.startswith("probe_") and sweep is not None and not sweep.probes:
            err.raw(
                f"claims.{cid}.metric",
                f"{claim.metric.name!r} needs the landscape probes, which sweep "
                f"{claim.sweep!r} does not record; add `probes: true` to it",
            )
    if errors or err.items:
        raise ParamsError(errors + err.items)
    return Study(params=params, claims=claims)


def load_study(path: str | Path = "params.yaml") -> Study:
    """Read and validate a params file, claims included."""
    return validate_study(read_yaml(path), file=str(path))


ALPHA = 0.05  # the family-wise level of the report's verdicts (study.stats.ALPHA)


def seeds_needed(family: int, same: bool = False) -> int:
    """The fewest seeds whose exact sign-flip test can reach ALPHA / family at all: its
    smallest p is 2 / 2^n two-sided (1 / 2^n for an equivalence's one-sided tests)."""
    return math.ceil(math.log2((1 if same else 2) * family / ALPHA) - 1e-12)


def undecidable(study: Study) -> list[str]:
    """One line per claim whose sweep's seeds cannot reach its level whatever the runs
    show (primary: ALPHA over the primary family's size, Holm's first step; exploratory:
    ALPHA), with how many seeds would: said before any training."""
    family = sum(c.primary for c in study.claims.values()) or 1
    out = []
    for cid, c in study.claims.items():
        sweep = study.params.sweeps.get(c.sweep)
        if sweep is None:
            continue
        n = len({r.seed for r in sweep.runs})
        m = family if c.primary else 1
        need = seeds_needed(m, c.expect == "same")
        if n < need:
            floor = (1 if c.expect == "same" else 2) / 2**n
            out.append(
                f"claim {cid}: sweep {c.sweep}'s {n} seeds cannot decide it: the exact test's "
                f"smallest p, {floor:.3g}, times its family's {m} claim(s) is above {ALPHA:g}; "
                f"{need} seeds could"
            )
    return out
