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
    for block in m.blocks:
        z = block.linear(h)
        if block.bn == "pre":
            _set_stats(block.norm, z)
            z = block.norm(z)
        a = block.act(z)
        if block.bn == "post":
            _set_stats(block.norm, a)
            a = block.norm(a)
        h = a
    return m


def _set_group_stats(state: dict, x: torch.Tensor) -> None:
    """x (R, n, w): each run's statistics over its own rows, written in place (the
    group's layers and any captured CUDA graph hold these very tensors)."""
    mean, var = _exact_stats(x, 1)
    state["running_mean"].copy_(mean)
    state["running_var"].copy_(var)


@torch.no_grad()
def precise_group_metrics(group, x_train, x_test, y_test) -> dict[str, torch.Tensor]:
    """Eval-mode test metrics of every run of a batched group ((R,) each, as
    `Group.evaluate`) with precise BN statistics; the group's state is left unchanged."""
    saved = group.snapshot()
    h = x_train  # (R, n_train, F)
    for j in range(group.depth):
        z = group.affine(h, group.weights[j], group.biases[j])
        if "pre" in group.bn_state:
            _set_group_stats(group.bn_state["pre"][j], z)
        z, _ = group.bn["pre"][j].forward(z, training=False)
        a = group.act_forward(z)
        if "post" in group.bn_state:
            _set_group_stats(group.bn_state["post"][j], a)
        h, _ = group.bn["post"][j].forward(a, training=False)
    metrics, _ = group.evaluate(x_test, y_test)
    group.restore(saved)
    return metrics


@torch.no_grad()
def precise_shared_metrics(group, train, test) -> dict[str, torch.Tensor]:
    """`precise_group_metrics` on rows held once (`SharedRows`): each statistic summed over
    chunks of rows, in two passes (the mean, then the unbiased variance about it)."""
    from bnmodels.training.shared_rows import evaluate_shared

    saved = group.snapshot()

    def inputs(j: int, x):
        """Layer j's pre-BN output z and its BN-pre-normalized activation a, eval mode."""
        h = x
        for i in range(j + 1):
            z = group.affine(h, group.weights[i], group.biases[i])
            zn, _ = group.bn["pre"][i].forward(z, training=False)
            a = group.act_forward(zn)
            h, _ = group.bn["post"][i].forward(a, training=False)
        return z, a

    for j in range(group.depth):
        for pos, which in (("pre", 0), ("post", 1)):
            if pos not in group.bn_state:
                continue
            total = None
            for xc, _ in train.chunks(group.width):
                v = inputs(j, xc)[which].sum(dim=1, keepdim=True)
                total = v if total is None else total + v
            mean = total / train.n
            sq = None
            for xc, _ in train.chunks(group.width):
                v = ((inputs(j, xc)[which] - mean) ** 2).sum(dim=1, keepdim=True)
                sq = v if sq is None else sq + v
            group.bn_state[pos][j]["running_mean"].copy_(mean)
            group.bn_state[pos][j]["running_var"].copy_(sq / (train.n - 1))
    metrics, _ = evaluate_shared(group, test)
    group.restore(saved)
    return metrics
