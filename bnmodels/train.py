"""The reference engine: one run, plain and sequential, exactly SPEC 4.

Kept forever as the implementation that faster engines are checked against; clarity
over speed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from bnmodels.config import RunConfig
from bnmodels.data import Split
from bnmodels.model import MLP, build_model
from bnmodels.run import RunResult, batch_slices, history_columns


def _std(t: torch.Tensor) -> float:
    return float(t.detach().std()) if t.numel() > 1 else 0.0


def loss_fn(num_class: int):
    """The batch loss of SPEC 4: MSE, or cross-entropy of the logits for a classifier."""
    return nn.functional.cross_entropy if num_class else nn.functional.mse_loss


@torch.no_grad()
def evaluate(model: MLP, x: torch.Tensor, y: torch.Tensor, num_class: int = 0):
    """Eval mode over all rows: {"mse"} or {"ce", "accuracy"}, and each hidden block's
    activation output."""
    model.eval()
    acts, h = [], x
    for block in model.blocks:
        z = block.linear(h)
        if block.bn == "pre":
            z = block.norm(z)
        a = block.act(z)
        acts.append(a)
        h = block.norm(a) if block.bn == "post" else a
    out = model.out(h)
    if not num_class:
        return {"mse": float(nn.functional.mse_loss(out, y))}, acts
    # argmax picks the lowest index among tied logits (SPEC 4)
    accuracy = (out.argmax(dim=1) == y).to(torch.float64).mean()
    return {"ce": float(nn.functional.cross_entropy(out, y)), "accuracy": float(accuracy)}, acts


def train_reference(cfg: RunConfig, data: Split, dtype: torch.dtype = torch.float32) -> RunResult:
    """Train one run per SPEC 4 and return its history, diverged flag and final weights."""
    data = data.to(dtype=dtype)
    model = build_model(cfg, data.x_train.shape[1], data.num_class).to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    loss_of = loss_fn(data.num_class)
    gs = torch.Generator().manual_seed(cfg.seed)
    n_train = data.x_train.shape[0]
    slices = batch_slices(n_train, cfg.batch_size)
    hist = {c: np.full(cfg.epochs, np.nan) for c in history_columns(cfg.depth, data.num_class)}
    diverged = False
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n_train, generator=gs)
        for s, e in slices:
            idx = perm[s:e]
            loss = loss_of(model(data.x_train[idx]), data.y_train[idx])
            if not torch.isfinite(loss):
                diverged = True
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        if diverged:
            break
        train, acts = evaluate(model, data.x_train, data.y_train, data.num_class)
        test, _ = evaluate(model, data.x_test, data.y_test, data.num_class)
        if not all(math.isfinite(v) for v in (*train.values(), *test.values())):
            diverged = True
            break
        for name in train:
            hist[f"train_{name}"][epoch], hist[f"test_{name}"][epoch] = train[name], test[name]
        for i, lin in enumerate(model.linears(), start=1):
            hist[f"weight_std_l{i}"][epoch] = _std(lin.weight)
            hist[f"grad_std_l{i}"][epoch] = _std(lin.weight.grad)
        if cfg.activation == "relu":
            # A unit is dead when its ReLU output is zero on every train row.
            dead = torch.cat([(a <= 0).all(dim=0) for a in acts])
            hist["dead_fraction"][epoch] = float(dead.to(torch.float64).mean())
    final = {
        "bn_running_mean": [n.running_mean.tolist() for n in model.norms()],
        "bn_running_var": [n.running_var.tolist() for n in model.norms()],
        "weight_grad": [
            (lin.weight.grad.flatten().tolist() if lin.weight.grad is not None else [])
            for lin in model.linears()
        ],
    }
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return RunResult(cfg, hist, diverged, state, final)
