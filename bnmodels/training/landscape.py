"""Loss-landscape probes along training (Santurkar et al. 2018), for both engines.

At the first batch of an epoch, before its SGD step, in train mode on that batch (BN
with the batch's statistics; running statistics left as they were): with g the
gradient of the batch loss L at the parameters w (all of them), for each step
eta in ETAS x lr, at w' = w - eta g, compute L(w') and g' = grad L(w'). Recorded:

- `probe_loss_range`: max minus min of L over w and the four w' (variation of the loss
  along the gradient: a smoother landscape varies less);
- `probe_grad_change`: max over eta of ||g' - g|| (how predictive the gradient stays);
- `probe_beta`: max over eta of ||g' - g|| / ||eta g|| (effective beta-smoothness).

Norms are Euclidean over every parameter of the run (Linear weights and biases, BN
gamma and beta). Probing changes nothing: the training trajectory is bit-identical with
probes on or off (tests check it).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from bnmodels import columns

ETAS = (0.5, 1.0, 2.0, 4.0)  # multiples of the run's lr
PROBE_COLUMNS = columns.PROBES


def probe_model(model: nn.Module, loss_of, xb, yb, lr: float) -> dict[str, float]:
    """The probes of one run (reference engine), with autograd on a copy of the model."""
    m = copy.deepcopy(model).train()  # its running statistics may move: a copy's do
    params = list(m.parameters())
    start = [p.detach().clone() for p in params]

    def loss_and_grad():
        loss = loss_of(m(xb), yb)
        return loss.item(), torch.autograd.grad(loss, params)

    loss0, grad0 = loss_and_grad()
    norm0 = math.sqrt(sum(float((g * g).sum()) for g in grad0))
    losses, changes, betas = [loss0], [], []
    for k in ETAS:
        with torch.no_grad():
            for p, p0, g in zip(params, start, grad0, strict=True):
                p.copy_(p0 - (k * lr) * g)
        loss, grad = loss_and_grad()
        change = math.sqrt(
            sum(float(((a - b) ** 2).sum()) for a, b in zip(grad, grad0, strict=True))
        )
        losses.append(loss)
        changes.append(change)
        betas.append(change / (k * lr * norm0) if norm0 > 0 else math.nan)
    return {
        "probe_loss_range": max(losses) - min(losses),
        "probe_grad_change": max(changes),
        "probe_beta": max(betas),
    }


def _run_norm_sq(grads) -> torch.Tensor:
    """Per-run sum of squares over [(parameter, gradient, runs or None)], (R,)."""
    total = 0
    for _, g, runs in grads:
        sq = (g * g).flatten(1).sum(dim=1)
        total = total + (sq if runs is None else torch.where(runs.flatten(), sq, 0))
    return total


@torch.no_grad()
def probe_group(group, xb, yb) -> dict[str, torch.Tensor]:
    """The probes of every run of a batched group on its batch (xb (R, B, F)): (R,) each.

    Parameters a run does not use (BN at a position it does not have) are left out of its
    norms. Every parameter and running statistic is restored bit for bit afterwards.
    """
    saved = group.snapshot()
    loss0, grads0 = group.loss_and_gradients(xb, yb)
    start = [p.clone() for p, _, _ in grads0]
    lr = group.lr  # (R, 1, 1)
    norm0 = _run_norm_sq(grads0).sqrt()
    losses, changes, betas = [loss0], [], []
    for k in ETAS:
        for (p, g, _), p0 in zip(grads0, start, strict=True):
            torch.addcmul(p0, g, lr * k, value=-1, out=p)
        loss, grads = group.loss_and_gradients(xb, yb)
        diff = [(p, g - g0, runs) for (p, g, runs), (_, g0, _) in zip(grads, grads0, strict=True)]
        change = _run_norm_sq(diff).sqrt()
        losses.append(loss)
        changes.append(change)
        betas.append(change / (k * lr.flatten() * norm0))
    group.restore(saved)
    losses = torch.stack(losses)
    return {
        "probe_loss_range": losses.max(dim=0).values - losses.min(dim=0).values,
        "probe_grad_change": torch.stack(changes).max(dim=0).values,
        "probe_beta": torch.stack(betas).max(dim=0).values,
    }
