"""What the seeds can decide, said before any training (study/load.py's undecidable)."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from bnmodels.study.load import seeds_needed, undecidable, validate_study

ROOT = Path(__file__).resolve().parents[1]


def _study(seeds: list[int], primary: int):
    """params.yaml's course sweeps and claims, the depth sweep on `seeds`, and `primary`
    of its claims primary (the others exploratory)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["file_datasets"] = {}
    raw["sweeps"] = {k: v for k, v in raw["sweeps"].items() if not k.startswith("transfer_")}
    raw["sweeps"]["depth"]["seed"] = seeds
    claims = {k: v for k, v in raw["claims"].items() if v["sweep"] in raw["sweeps"]}
    for i, c in enumerate(claims.values()):
        c["primary"] = c["sweep"] == "depth" and i < 100 and primary > 0
        primary -= c["primary"]
    raw["claims"] = claims
    return validate_study(raw)


def test_the_seeds_needed_follow_the_exact_tests_floor():
    # by hand: 2 / 2^n <= 0.05 / m, so n >= log2(40 m)
    for m in (1, 4, 14, 20):
        n = seeds_needed(m)
        assert 2 / 2**n <= 0.05 / m < 2 / 2 ** (n - 1)
    assert seeds_needed(1) == 6 and seeds_needed(4) == 8 and seeds_needed(20) == 10
    assert seeds_needed(4, same=True) == math.ceil(math.log2(80))


def test_a_sweep_whose_seeds_cannot_decide_is_said_before_training():
    # the case: 6 seeds, a family of 4 claims: floor 2/64 x 4 > 0.05
    lines = undecidable(_study([1, 2, 3, 4, 5, 6], primary=4))
    depth = [line for line in lines if "sweep depth's 6 seeds" in line]
    assert depth and all("8 seeds could" in line or "7 seeds could" in line for line in depth)
    assert not undecidable(_study(list(range(100, 110)), primary=4))
