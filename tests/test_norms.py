"""The batched engine's normalization layers (training/norms.py) against PyTorch's own
modules in float64, and the batched engine with layer and group normalization against
the reference engine (SPEC Precision: float64, the first epochs)."""

import itertools

import numpy as np
import pytest
import torch
from configs import run_config

from bnmodels.experiment.data import generate
from bnmodels.training import norms
from bnmodels.training.batched import train_group, train_runs
from bnmodels.training.block import Norm
from bnmodels.training.reference import train_reference

torch.set_num_threads(1)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# (kind, groups) of every norm without batch statistics, at width 8: one group of 8
# units, groups of 4 and groups of 2. Groups of two units normalize to +-1 and amplify
# rounding (their gradients grow as 1/|a - b|): trained runs with them agree to 1e-8.
NORMS = [("layer", 0), ("group", 2), ("group", 4), ("rms", 0)]
WIDTH = 8


def _torch_norm(kind: str, groups: int, width: int) -> torch.nn.Module:
    if kind == "layer":
        return torch.nn.LayerNorm(width).double()
    if kind == "rms":  # eps as the other norms' (RMSNorm's default follows the dtype)
        return torch.nn.RMSNorm(width, eps=1e-5).double()
    return torch.nn.GroupNorm(groups, width).double()


@pytest.mark.parametrize(("kind", "groups"), NORMS)
def test_forward_and_gradients_equal_torch_layer_and_group_norm_in_float64(kind, groups):
    """Three runs stacked, each with its own gamma and beta, against torch's module of each
    run (autograd for the gradients), to 1e-10."""
    R, B, w = 3, 7, WIDTH
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(R, B, w, generator=gen, dtype=torch.float64) * 3 + 1
    grad_y = torch.randn(R, B, w, generator=gen, dtype=torch.float64)
    lr = torch.full((R, 1, 1), 0.1, dtype=torch.float64)
    st = norms.init_state(Norm(kind, "pre", groups), R, w, None, lr, dict(dtype=torch.float64))
    st["weight"].copy_(torch.rand(R, 1, w, generator=gen, dtype=torch.float64) + 0.5)
    if kind != "rms":  # RMS normalization has no shift
        st["bias"].copy_(torch.randn(R, 1, w, generator=gen, dtype=torch.float64))
    forward, backward, _ = norms.KINDS[kind]
    y, cache = forward(x, st, True)
    grad_x, grad_gamma, grad_beta = backward(grad_y, st, cache, update=False)
    for r in range(R):
        m = _torch_norm(kind, groups, w)
        with torch.no_grad():
            m.weight.copy_(st["weight"][r, 0])
            if kind != "rms":
                m.bias.copy_(st["bias"][r, 0])
        xr = x[r].clone().requires_grad_(True)
        yr = m(xr)
        yr.backward(grad_y[r])
        torch.testing.assert_close(y[r], yr.detach(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(grad_x[r], xr.grad, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(grad_gamma[r, 0], m.weight.grad, rtol=1e-10, atol=1e-10)
        if kind != "rms":
            torch.testing.assert_close(grad_beta[r, 0], m.bias.grad, rtol=1e-10, atol=1e-10)
    # eval mode computes the same (no running statistics)
    torch.testing.assert_close(forward(x, st, False)[0], y, rtol=0, atol=0)


@pytest.fixture(scope="module")
def split():
    from configs import quad2_spec

    return generate(quad2_spec(num_examples=200))


def _cfg(**kw):
    base = {"dataset": "d", "depth": 2, "width": WIDTH, "batch_size": 20, "lr": 0.01}
    return run_config(**{**base, **kw})


def _norm_cfg(kind, at, groups=0, **kw):
    """A run with norm `kind` at `at` (bn follows: the BatchNorm placement, or none)."""
    bn = at if kind == "batch" else "none"
    return _cfg(bn=bn, norm=kind, norm_at=at, groups=groups or None, **kw)


def _every_norm(**kw):
    return [
        _norm_cfg(kind, at, groups, activation=a, **kw)
        for (kind, groups), at, a in itertools.product(NORMS, ("pre", "post"), ("sigmoid", "relu"))
    ]


def _tolerance(cfg) -> float:
    return 1e-8 if cfg.norm == "group" and WIDTH // cfg.groups == 2 else 1e-10


def _assert_close(b, r, rtol):
    assert b.state_dict.keys() == r.state_dict.keys()
    for col, values in r.history.items():
        np.testing.assert_allclose(
            b.history[col], values, rtol=rtol, atol=1e-12, err_msg=f"{r.config.run_key} {col}"
        )
    for k, v in r.state_dict.items():
        torch.testing.assert_close(b.state_dict[k].double(), v.double(), rtol=rtol, atol=1e-12)


def test_batched_engine_trains_layer_and_group_norm_as_the_reference_does_in_float64(split):
    """Every norm x placement x (sigmoid, relu), 3 epochs of SGD (21 steps), probes on:
    the batched engine's hand-written layers against torch's modules and autograd (the
    reference engine), in float64, per epoch and in the final weights, to 1e-10 (groups
    of two units: 1e-8)."""
    cfgs = _every_norm(epochs=3)
    batched = train_runs(cfgs, [split] * len(cfgs), dtype=torch.float64, probes=True)
    for c, b in zip(cfgs, batched, strict=True):
        r = train_reference(c, split, dtype=torch.float64, probes=True)
        assert not r.diverged and not b.diverged
        _assert_close(b, r, _tolerance(c))
        # no batch statistics: nothing to make precise, no running statistics
        assert b.precise_bn == r.precise_bn == {}
        assert b.final["bn_running_mean"] == r.final["bn_running_mean"] == []


def test_the_broadcast_products_of_cuda_also_train_these_norms_as_the_reference(split):
    cfgs = _every_norm(epochs=2)[::3]
    batched = train_group(cfgs, [split] * len(cfgs), dtype=torch.float64, broadcast=True)
    for c, b in zip(cfgs, batched, strict=True):
        _assert_close(b, train_reference(c, split, dtype=torch.float64), _tolerance(c))


def _same_bits(a, b):
    for col in a.history:
        assert np.array_equal(a.history[col], b.history[col], equal_nan=True), col
    for k in a.state_dict:
        assert torch.equal(a.state_dict[k], b.state_dict[k]), k
    assert a.final == b.final and a.precise_bn == b.precise_bn


def _company(targets):
    """`targets` among runs of every norm, placement and BatchNorm, other seeds."""
    others = [
        _norm_cfg(kind, at, g, seed=s, epochs=4)
        for (kind, g), at, s in itertools.product([*NORMS, ("batch", 0)], ("pre", "post"), (1, 2))
    ]
    return others + [_cfg(bn=b, seed=3, epochs=4) for b in ("none", "pre", "post")] + targets


def _targets():
    return [
        _norm_cfg("layer", "post", activation="tanh", seed=7, epochs=4),
        _norm_cfg("group", "pre", 2, seed=8, epochs=4),
        _cfg(bn="pre", seed=9, epochs=4),
    ]


def test_a_norm_run_alone_and_among_others_of_every_norm_is_bit_for_bit_the_same(split):
    pool = _company(_targets())
    together = train_group(pool, [split] * len(pool), probes=True)
    for k, t in enumerate(_targets(), start=len(pool) - 3):
        _same_bits(train_group([t], [split], probes=True)[0], together[k])


def test_bn_pre_is_norm_batch_pre_bit_for_bit(split):
    shorthand = _cfg(bn="pre", epochs=3)
    spelled = _norm_cfg("batch", "pre", epochs=3)
    assert shorthand == spelled and shorthand.run_key == spelled.run_key
    _same_bits(train_group([shorthand], [split])[0], train_group([spelled], [split])[0])


@cuda
def test_cuda_trains_layer_and_group_norm_as_the_cpu_reference_in_float64(split):
    cfgs = _every_norm(epochs=2)
    batched = train_runs(cfgs, [split] * len(cfgs), device="cuda", dtype=torch.float64)
    for c, b in zip(cfgs, batched, strict=True):
        _assert_close(b, train_reference(c, split, dtype=torch.float64), _tolerance(c))


@cuda
def test_cuda_norm_run_alone_and_among_others_is_bit_for_bit_the_same(split):
    pool = _company(_targets())
    together = train_group(pool, [split] * len(pool), device="cuda")
    for k, t in enumerate(_targets(), start=len(pool) - 3):
        _same_bits(train_group([t], [split], device="cuda")[0], together[k])
