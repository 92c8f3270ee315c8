"""The MLP's layer order and initialization against a hand-built nn.Sequential (SPEC 4)."""

from __future__ import annotations

import itertools

import pytest
import torch
from configs import run_config
from torch import nn

from bnmodels.experiment.config import RunConfig
from bnmodels.training.model import build_model


def config(**kw) -> RunConfig:
    return run_config(**{"dataset": "d", "depth": 2, "width": 5, "lr": 0.01, "epochs": 1, **kw})


def linears_and_norms(module: nn.Module):
    """Linear and BatchNorm1d submodules in registration (= construction) order."""
    lins = [m for m in module.modules() if isinstance(m, nn.Linear)]
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm1d)]
    return lins, norms


SHAPES = list(
    itertools.product(["none", "pre", "post"], [1, 2, 3], ["default", "xavier", "kaiming"])
)


@pytest.mark.parametrize(("bn", "depth", "init"), SHAPES)
def test_model_equals_hand_built_sequential_in_weights_and_layer_order(
    reference_mlp, bn, depth, init
):
    activation = {"none": "tanh", "pre": "sigmoid", "post": "relu"}[bn]
    cfg = config(bn=bn, depth=depth, init=init, activation=activation, momentum=0.3, seed=7)
    in_features = 3
    model = build_model(cfg, in_features)
    ref = reference_mlp(in_features, depth, cfg.width, activation, bn, 0.3, init, 7)

    # Same initial weights, layer by layer in construction order.
    (lins, norms), (ref_lins, ref_norms) = linears_and_norms(model), linears_and_norms(ref)
    assert len(lins) == len(ref_lins) == depth + 1
    assert len(norms) == len(ref_norms) == (0 if bn == "none" else depth)
    for a, b in zip(lins, ref_lins, strict=True):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    for a, b in zip(norms, ref_norms, strict=True):
        assert (a.momentum, a.eps, a.affine, a.track_running_stats) == (0.3, 1e-5, True, True)
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)

    # Same function, in float64 so that only the order of operations can differ: in train
    # mode (batch statistics, running statistics updated) and then in eval mode.
    model, ref = model.double(), ref.double()
    with torch.no_grad():  # non-trivial BN affine parameters make pre and post distinguishable
        for a, b in zip(norms, ref_norms, strict=True):
            for p, q in ((a.weight, b.weight), (a.bias, b.bias)):
                p.copy_(torch.linspace(-1.5, 2.0, p.numel()))
                q.copy_(p)
    x = torch.randn(16, in_features, generator=torch.Generator().manual_seed(1)).double() * 3
    model.train(), ref.train()
    torch.testing.assert_close(model(x), ref(x), rtol=1e-12, atol=1e-12)
    for a, b in zip(norms, ref_norms, strict=True):
        torch.testing.assert_close(a.running_mean, b.running_mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(a.running_var, b.running_var, rtol=1e-12, atol=1e-12)
    model.eval(), ref.eval()
    torch.testing.assert_close(model(x[:5]), ref(x[:5]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("init", ["xavier", "kaiming"])
def test_init_changes_linear_weights_but_keeps_default_biases(reference_mlp, init):
    default = build_model(config(init="default"), 3)
    other = build_model(config(init=init), 3)
    for a, b in zip(default.linears(), other.linears(), strict=True):
        assert not torch.equal(a.weight, b.weight)
        assert torch.equal(a.bias, b.bias)


def test_build_model_leaves_the_global_rng_untouched():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    build_model(config(bn="pre", depth=3, init="xavier"), 4)
    assert torch.equal(torch.get_rng_state(), state)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))


def test_build_model_depends_only_on_the_configuration():
    cfg = config(bn="post", depth=2, init="kaiming")
    torch.manual_seed(1)
    a = build_model(cfg, 2).state_dict()
    torch.rand(50)
    b = build_model(cfg, 2).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = build_model(config(bn="post", depth=2, init="kaiming", seed=25), 2).state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_model_maps_a_batch_of_features_to_one_output_per_row():
    model = build_model(config(depth=3, width=6), in_features=5)
    assert model(torch.randn(7, 5)).shape == (7, 1)
    lins = model.linears()
    assert [(lin.in_features, lin.out_features) for lin in lins] == [(5, 6), (6, 6), (6, 6), (6, 1)]
