"""Precise BatchNorm statistics at the end of training (Wu and Johnson 2021), both engines.

The test error of the trained network with each BN layer's running statistics replaced
by the exact mean and unbiased variance of its input over the whole train set, computed
layer by layer in one pass each (the inputs of layer j+1 already use layer j's precise
statistics), in eval mode. Its gap to the test error with the running statistics is
what the running averages cost: the course's argument for large batches.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bnmodels.training import block
from bnmodels.training.block import POSITIONS


def _exact_stats(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased variance over the rows of x (dimension `dim`)."""
    mean = x.mean(dim=dim, keepdim=True)
    var = ((x - mean) ** 2).sum(dim=dim, keepdim=True) / (x.shape[dim] - 1)
    return mean, var


def _set_stats(norm: nn.BatchNorm1d, x: torch.Tensor) -> None:
    mean, var = _exact_stats(x, 0)
    norm.running_mean.copy_(mean.squeeze(0))
    norm.running_var.copy_(var.squeeze(0))


@torch.no_grad()
def precise_model(model: nn.Module, x_train: torch.Tensor) -> nn.Module:
    """A copy of a trained `bnmodels.training.model.MLP` with precise BN statistics."""
    m = copy.deepcopy(model).eval()
    h = x_train
    for b in m.blocks:
        pre, post = (_precise(b.norm_at(pos)) for pos in POSITIONS)
        h, _ = block.forward(h, b.linear, b.act, pre, post)
    return m


def _precise(norm: nn.Module | None):
    """The norm, its statistics first set from its input's (BatchNorm only)."""
    if not isinstance(norm, nn.BatchNorm1d):
        return norm

    def apply(x):
        _set_stats(norm, x)
        return norm(x)

    return apply


def _set_group_stats(state: dict, x: torch.Tensor) -> None:
    """x (R, n, w): each run's statistics over its own rows, written in place (the
    group's layers and any captured CUDA graph hold these very tensors)."""
    mean, var = _exact_stats(x, 1)
    state["running_mean"].copy_(mean)
    state["running_var"].copy_(var)


@torch.no_grad()
def precise_group_metrics(group, x_train, x_test, y_test) -> dict[str, torch.Tensor]:
    """Eval-mode test metrics of every run of a batched group ((R,) each, as
    `Group.evaluate`) with precise BN statistics; the group's state is left unchanged.
    Runs without BatchNorm get the metrics of their model as it is."""
    saved = group.snapshot()
    h = x_train  # (R, n_train, F)
    for j in range(group.depth):
        h, _, _ = group.block_forward(j, h, False, _precise_position, _precise_position)
    metrics, _ = group.evaluate(x_test, y_test)
    group.restore(saved)
    return metrics


def _batch_members(layer) -> list:
    """The BatchNorm members of a position's layer (a norms.Chain, or one layer)."""
    return [m for m in getattr(layer, "layers", [layer]) if getattr(m, "kind", None) == "batch"]


def _precise_position(layer, apply):
    """A position's layer, the statistics of its BatchNorm members first set from its
    input's (the members' runs are disjoint: each run's BatchNorm sees its own input)."""

    def precise(x):
        for m in _batch_members(layer):
            _set_group_stats(m.state, x)
        return apply(x)

    return precise


def _position_input(group, j: int, pos: str, x: torch.Tensor) -> torch.Tensor:
    """The input of hidden layer j's norm at `pos`, eval mode, for the rows x (R, c, F)."""
    h = x
    for i in range(j):
        h, _, _ = group.block_forward(i, h, False)
    seen = {}

    def capture(layer, apply):
        def record(z):
            seen["x"] = z
            return apply(z)

        return record

    group.block_forward(j, h, False, *((capture, None) if pos == "pre" else (None, capture)))
    return seen["x"]


@torch.no_grad()
def precise_shared_metrics(group, train, test) -> dict[str, torch.Tensor]:
    """`precise_group_metrics` on rows held once (`SharedRows`): each BatchNorm's statistics
    summed over chunks of rows, in two passes (the mean, then the unbiased variance about
    it), layer by layer as there."""
    from bnmodels.training.shared_rows import evaluate_shared

    saved = group.snapshot()
    for j in range(group.depth):
        for pos in POSITIONS:
            members = _batch_members(group.norms[pos][j])
            if not members:
                continue
            total = None
            for xc, _ in train.chunks(group.width):
                v = _position_input(group, j, pos, xc).sum(dim=1, keepdim=True)
                total = v if total is None else total + v
            mean = total / train.n
            sq = None
            for xc, _ in train.chunks(group.width):
                v = ((_position_input(group, j, pos, xc) - mean) ** 2).sum(dim=1, keepdim=True)
                sq = v if sq is None else sq + v
            for m in members:
                m.state["running_mean"].copy_(mean)
                m.state["running_var"].copy_(sq / (train.n - 1))
    metrics, _ = evaluate_shared(group, test)
    group.restore(saved)
    return metrics
