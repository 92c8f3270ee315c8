"""Claims judged on a synthetic sweep named "s": shared by the claims and report tests."""

from __future__ import annotations

from bnmodels.experiment.config import CONFIG_KEYS
from bnmodels.study.claim import Problems, validate_claims
from bnmodels.study.prepared import SweepData, prepare
from bnmodels.study.verdicts import evaluate


def parse(data: SweepData, **claims):
    """The claims (as written in params.yaml) on the sweep "s", validated; none may fail."""
    errors = Problems()
    runs = data.runs[list(CONFIG_KEYS)].to_dict("records")
    # primary unless said otherwise: the claims tested here are the confirmatory kind
    specs = {cid: {"says": cid, "sweep": "s", "primary": True, **c} for cid, c in claims.items()}
    parsed = validate_claims(specs, {"s": runs}, errors)
    assert not errors, errors
    return list(parsed.values())


def judge(data: SweepData, **claims):
    """Each claim judged on the sweep "s", by id."""
    return {r.claim.id: r for r in evaluate(parse(data, **claims), {"s": prepare("s", data)})}
