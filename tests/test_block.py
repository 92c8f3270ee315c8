"""The hidden block (training/block.py), as the reference model builds it, against the
same stack written out with torch.nn modules, for every norm kind and placement."""

import itertools

import pytest
import torch
from configs import run_config
from torch import nn

from bnmodels.training.block import Norm
from bnmodels.training.model import build_model
from bnmodels.training.precise_bn import precise_model

ACT = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}
KINDS = [("batch", 0), ("layer", 0), ("group", 2), ("rms", 0)]


def _norm_module(kind: str, groups: int, width: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    if kind == "rms":
        return nn.RMSNorm(width, eps=1e-5)
    return nn.GroupNorm(groups, width)


def _by_hand(cfg, in_features: int) -> nn.Sequential:
    """Linear, then the norm before or after the activation, per hidden layer; seeded
    and constructed in SPEC order."""
    torch.manual_seed(cfg.seed)
    layers, k = [], in_features
    for _ in range(cfg.depth):
        layers.append(nn.Linear(k, cfg.width))
        norm = _norm_module(cfg.norm, cfg.groups, cfg.width)
        act = ACT[cfg.activation]()
        layers += [norm, act] if cfg.norm_at == "pre" else [act, norm]
        k = cfg.width
    layers.append(nn.Linear(cfg.width, 1))
    return nn.Sequential(*layers).double()


def _cfg(kind, groups, at, activation):
    bn = at if kind == "batch" else "none"
    return run_config(
        bn=bn, norm=kind, norm_at=at, groups=groups or None, activation=activation, depth=2, width=6
    )


@pytest.mark.parametrize(
    ("kind", "groups", "at", "activation"),
    [(k, g, at, a) for (k, g), at, a in itertools.product(KINDS, ("pre", "post"), ACT)],
)
def test_the_block_places_each_norm_as_the_stack_written_by_hand(kind, groups, at, activation):
    """Same initial weights, outputs and gradients (train mode), float64."""
    cfg = _cfg(kind, groups, at, activation)
    model = build_model(cfg, 2).double()
    hand = _by_hand(cfg, 2)
    assert [p.shape for p in model.parameters()] == [p.shape for p in hand.parameters()]
    for p, q in zip(model.parameters(), hand.parameters(), strict=True):
        assert torch.equal(p, q)
    x = torch.randn(9, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out, ref = model(x), hand(x)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    out.sum().backward()
    ref.sum().backward()
    for p, q in zip(model.parameters(), hand.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-12)


def test_norm_kinds_build_torchs_modules_with_their_eps_and_groups():
    assert Norm("none", "none").module(4, 0.1) is None
    bn = Norm("batch", "pre").module(4, 0.3)
    assert isinstance(bn, nn.BatchNorm1d) and bn.momentum == 0.3 and bn.eps == 1e-5
    ln = Norm("layer", "post").module(4, 0.1)
    assert isinstance(ln, nn.LayerNorm) and ln.normalized_shape == (4,) and ln.eps == 1e-5
    gn = Norm("group", "pre", 2).module(4, 0.1)
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 2 and gn.eps == 1e-5
    rms = Norm("rms", "pre").module(4, 0.1)
    assert isinstance(rms, nn.RMSNorm) and rms.eps == 1e-5 and rms.normalized_shape == (4,)


def test_precise_statistics_leave_a_model_without_batchnorm_as_it_is():
    model = build_model(_cfg("layer", 0, "pre", "sigmoid"), 2)
    assert model.batch_norms() == []
    x = torch.randn(30, 2)
    assert torch.equal(precise_model(model, x)(x), model.eval()(x))
