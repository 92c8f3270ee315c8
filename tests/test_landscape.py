"""Landscape probes, effective learning rates and precise BN, against plain torch.

Each measure is recomputed here from SPEC 4's network as an nn.Sequential (conftest),
with torch.func for the probes, in float64, and both engines must agree to 1e-8.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from configs import run_config
from torch import nn
from torch.func import functional_call, grad, replace_all_batch_norm_modules_

from bnmodels.experiment.config import DatasetSpec, RunConfig
from bnmodels.experiment.data import generate
from bnmodels.training.batched import train_group, train_runs
from bnmodels.training.landscape import ETAS
from bnmodels.training.reference import train_reference

torch.set_num_threads(1)


def config(**kw) -> RunConfig:
    return run_config(
        **{
            "dataset": "d",
            "activation": "tanh",
            "bn": "pre",
            "depth": 2,
            "batch_size": 20,
            "lr": 0.05,
            "epochs": 4,
            **kw,
        }
    )


@pytest.fixture(scope="module")
def split():
    spec = DatasetSpec("d", 160, (2.0, -1.0), False, 0.01, 2, 420, 0.7, (1.0,) * 2, (0.0,) * 2)
    return generate(spec)


def probes_by_torch_func(model: nn.Module, xb, yb, lr: float) -> dict[str, float]:
    """The probes from their definition (landscape.py docstring), with torch.func on a
    copy of the model whose BN layers keep no running statistics (torch.func cannot
    mutate them; train mode normalizes with the batch's statistics either way)."""
    model = replace_all_batch_norm_modules_(copy.deepcopy(model))
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}

    def loss(p):
        return nn.functional.mse_loss(functional_call(model, (p, buffers), (xb,)), yb)

    def flat(g):
        return torch.cat([t.flatten() for t in g.values()])

    g0 = flat(grad(loss)(params))
    losses, changes, betas = [loss(params).item()], [], []
    for eta in (k * lr for k in ETAS):
        steps = zip(params.items(), _split(g0, params), strict=True)
        moved = {k: v - eta * g for (k, v), g in steps}
        change = (flat(grad(loss)(moved)) - g0).norm().item()
        losses.append(loss(moved).item())
        changes.append(change)
        betas.append(change / (eta * g0.norm().item()))
    return {
        "probe_loss_range": max(losses) - min(losses),
        "probe_grad_change": max(changes),
        "probe_beta": max(betas),
    }


def _split(flat: torch.Tensor, like: dict) -> list[torch.Tensor]:
    out, i = [], 0
    for v in like.values():
        out.append(flat[i : i + v.numel()].view_as(v))
        i += v.numel()
    return out


def hand_trajectory(cfg: RunConfig, split, reference_mlp):
    """SPEC 4's loop (plain torch.nn, float64) recording, per epoch, the probes at the
    first batch before its step, and each Linear's ||W|| and ||grad W|| / ||W||."""
    xtr, ytr = split.x_train.double(), split.y_train.double()
    shape = (cfg.depth, cfg.width, cfg.activation, cfg.bn, cfg.momentum, cfg.init, cfg.seed)
    model = reference_mlp(xtr.shape[1], *shape).double()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    gs = torch.Generator().manual_seed(cfg.seed)
    rows = []
    for _ in range(cfg.epochs):
        model.train()
        perm = torch.randperm(xtr.shape[0], generator=gs)
        row = {}
        for start in range(0, xtr.shape[0], cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            if len(idx) == 1:
                continue
            if start == 0:
                row.update(probes_by_torch_func(model, xtr[idx], ytr[idx], cfg.lr))
            opt.zero_grad()
            nn.functional.mse_loss(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
        lins = [m for m in model if isinstance(m, nn.Linear)]
        for i, lin in enumerate(lins, start=1):
            row[f"weight_norm_l{i}"] = lin.weight.norm().item()
            row[f"grad_ratio_l{i}"] = (lin.weight.grad.norm() / lin.weight.norm()).item()
        rows.append(row)
    return model, rows


def precise_test_mse_by_hand(model: nn.Sequential, split) -> float:
    """Each BatchNorm1d's statistics set from its input over the train set, in order, one
    pass each (torch.var_mean, unbiased), then the eval-mode test MSE."""
    model = model.eval()
    xtr = split.x_train.double()
    with torch.no_grad():
        for i, m in enumerate(model):
            if isinstance(m, nn.BatchNorm1d):
                var, mean = torch.var_mean(model[:i](xtr), dim=0, correction=1)
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
        return nn.functional.mse_loss(model(split.x_test.double()), split.y_test.double()).item()


ACTIVATIONS, BN_MODES = ["sigmoid", "tanh", "relu"], ["none", "pre", "post"]
CASES = [config(activation=a, bn=b) for a, b in itertools.product(ACTIVATIONS, BN_MODES)]


@pytest.mark.parametrize("cfg", CASES, ids=lambda c: f"{c.activation}-{c.bn}")
def test_probes_and_effective_lr_equal_torch_func_in_both_engines(split, reference_mlp, cfg):
    hand, rows = hand_trajectory(cfg, split, reference_mlp)
    ref = train_reference(cfg, split, dtype=torch.float64, probes=True)
    batched = train_runs([cfg], [split], dtype=torch.float64, probes=True)[0]
    for col in rows[0]:
        want = [r[col] for r in rows]
        for name, result in (("reference", ref), ("batched", batched)):
            np.testing.assert_allclose(
                result.history[col], want, rtol=1e-8, err_msg=f"{name} {col}"
            )
    # the probes measure something: the loss moves along the gradient
    assert (np.asarray([r["probe_loss_range"] for r in rows]) > 0).all()


@pytest.mark.parametrize("cfg", [c for c in CASES if c.bn != "none"], ids=lambda c: c.bn)
def test_precise_bn_equals_one_pass_statistics_over_the_train_set(split, reference_mlp, cfg):
    hand, _ = hand_trajectory(cfg, split, reference_mlp)
    want = precise_test_mse_by_hand(hand, split)
    ref = train_reference(cfg, split, dtype=torch.float64)
    batched = train_runs([cfg], [split], dtype=torch.float64)[0]
    assert ref.precise_bn["mse"] == pytest.approx(want, rel=1e-8)
    assert batched.precise_bn["mse"] == pytest.approx(want, rel=1e-8)
    # the running statistics are not the precise ones: the two errors differ
    assert ref.precise_bn["mse"] != pytest.approx(ref.final_test_mse, rel=1e-6)
    assert ref.summary()["final_test_mse_precise_bn"] == ref.precise_bn["mse"]


def test_runs_without_bn_have_no_precise_bn_error(split):
    cfg = config(bn="none")
    assert train_reference(cfg, split).precise_bn == {}
    assert np.isnan(train_runs([cfg], [split])[0].summary()["final_test_mse_precise_bn"])


@pytest.mark.parametrize("bn", ["none", "pre", "post"])
def test_the_trajectory_is_bit_identical_with_probes_on_or_off(split, bn):
    company = itertools.product(BN_MODES, ["relu", "sigmoid"], [1, 2])
    runs = [config(bn=b, activation=a, seed=s, epochs=3) for b, a, s in company]
    target = config(bn=bn, epochs=3, lr=0.1)
    datas = [split] * (len(runs) + 1)
    on = train_group(runs + [target], datas, probes=True)[-1]
    off = train_group([target], [split])[0]
    ref_on = train_reference(target, split, probes=True)
    ref_off = train_reference(target, split)
    for a, b in ((on, off), (ref_on, ref_off)):
        for col, values in b.history.items():
            np.testing.assert_array_equal(a.history[col], values, err_msg=col)
        for k, t in b.state_dict.items():
            assert torch.equal(a.state_dict[k], t), k
        assert a.precise_bn == b.precise_bn
    # and a run's probes do not depend on its company
    alone = train_group([target], [split], probes=True)[0]
    for col in ("probe_loss_range", "probe_grad_change", "probe_beta"):
        np.testing.assert_array_equal(alone.history[col], on.history[col], err_msg=col)
