"""The whole of params.yaml: the runs of every sweep and the claims judged on them.

The plan stage validates it all at once, before anything trains (every problem of every
section in one message); the aggregate stage reads the claims. The train and generate
stages read params.yaml through `bnmodels.experiment.params` alone, so that the claims code is
none of their dependencies: editing how claims are judged retrains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bnmodels.errors import ParamsError
from bnmodels.experiment.config import Params
from bnmodels.experiment.params import ErrorList, check, read_yaml
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
