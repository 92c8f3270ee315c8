"""The verdict layer on constructed sweeps: the guard's decisions, per-cell effects against a
hand computation, and the A/A control (study/verdicts.py, cells.py, calibration.py)."""

from __future__ import annotations

import numpy as np
import pytest
from claims_on_sweeps import judge
from scipy import stats as sps
from test_claims import BN, SEEDS, make_sweep

from bnmodels.study import convergence, stats


def _falling(level):
    """Both arms fall at the same rate to the end; `level` sets each arm's height."""

    def curve(cfg, epochs):
        return level(cfg) * np.exp(-(epochs - 1.0) / 15.0)

    return curve


def test_identical_arms_are_supported_as_the_same_at_any_budget():
    # bn=post and bn=none give the same curve, bit for bit, still falling steeply
    data = make_sweep(
        {"bn": ["none", "post"]},
        lambda c: 1.0,
        curve=_falling(lambda c: 4.0),
        fixed={"epochs": 30},
        noise_keys=(),
    )
    same = {**BN, "compare": {"bn": "post"}, "expect": "same", "margin": 0.1}
    r = judge(data, same=same)["same"]
    assert r.estimate == 0 and r.verdict == stats.SUPPORTED
    assert r.scope.decides and r.p == pytest.approx(1 / 2 ** len(SEEDS))


def test_a_gap_both_arms_keep_while_falling_is_decided():
    # both arms still fall at the same rate; BN is half as high all along
    data = make_sweep(
        {"bn": ["none", "pre"]},
        lambda c: 1.0,
        curve=_falling(lambda c: 2.0 if c["bn"] == "pre" else 4.0),
        fixed={"epochs": 30},
    )
    r = judge(data, lower={**BN, "expect": "lower"})["lower"]
    assert r.verdict == stats.SUPPORTED and r.scope.kind == convergence.STABLE
    assert "still moving" in r.scope.note  # said, not hidden


def test_a_gap_the_lagging_arm_is_closing_is_not_decided():
    def curve(cfg, e):  # no BN falls fast towards BN's converged level
        return 2.0 + (0.0 if cfg["bn"] == "pre" else 40.0) * np.exp(-(e - 1.0) / 8.0)

    data = make_sweep({"bn": ["none", "pre"]}, lambda c: 1.0, curve=curve, fixed={"epochs": 30})
    r = judge(data, lower={**BN, "expect": "lower"})["lower"]
    assert r.p_holm < 0.05 and r.estimate < 0  # BN lower now ...
    assert r.verdict == stats.INCONCLUSIVE and r.scope.kind == convergence.UNDECIDED  # ...


def test_per_cell_effects_equal_a_hand_computation():
    data = make_sweep(
        {"bn": ["none", "pre"], "depth": [1, 2, 4]},
        lambda c: 2.0 * ({1: 1.0, 2: 0.8, 4: 0.25}[c["depth"]] if c["bn"] == "pre" else 1.0),
    )
    r = judge(data, lower={**BN, "expect": "lower"})["lower"]
    runs = data.runs.assign(v=np.log(data.runs["final_test_mse"]))
    t = runs.pivot_table(index="seed", columns=["depth", "bn"], values="v")
    for cell in r.cells:
        depth = int(cell.name.split("=")[1])
        d = (t[(depth, "pre")] - t[(depth, "none")]).to_numpy()
        # simultaneous over the claim's 3 cells: each at 1 - 0.05 / 3 (Bonferroni)
        ci = sps.ttest_1samp(d, 0).confidence_interval(1 - 0.05 / 3)
        assert (cell.estimate, cell.ci_low, cell.ci_high) == pytest.approx(
            (d.mean(), ci.low, ci.high)
        )
        assert cell.n == len(SEEDS) and cell.state_compare in convergence.STATES
    # where it lives: clear at depth 4 (and 2), not at depth 1 where BN changes nothing
    assert "depth=4" in r.where.split("not in")[0] and "not in depth=1" in r.where
