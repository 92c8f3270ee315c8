"""The reference engine: one run, plain and sequential, exactly SPEC 4.

Kept forever as the implementation that faster engines are checked against; clarity
over speed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from bnmodels.experiment.config import RunConfig
from bnmodels.experiment.data import Split
from bnmodels.training.baseline import baselines
from bnmodels.training.landscape import probe_model
from bnmodels.training.model import MLP, build_model
from bnmodels.training.precise_bn import precise_model
from bnmodels.training.result import PROBE_COLUMNS, RunResult, batch_slices, history_columns


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
        h, a = block.forward_with_activation(h)
        acts.append(a)
    out = model.out(h)
    if not num_class:
        return {"mse": float(nn.functional.mse_loss(out, y))}, acts
    # argmax picks the lowest index among tied logits (SPEC 4)
    accuracy = (out.argmax(dim=1) == y).to(torch.float64).mean()
    return {"ce": float(nn.functional.cross_entropy(out, y)), "accuracy": float(accuracy)}, acts


def train_reference(
    cfg: RunConfig, data: Split, dtype: torch.dtype = torch.float32, probes: bool = False
) -> RunResult:
    """Train one run per SPEC 4 and return its history, diverged flag and final weights.
    `probes`: the loss-landscape probes at each epoch's first batch (landscape.py)."""
    baseline = baselines(data)  # from the data as stored, in float64
    data = data.to(dtype=dtype)
    model = build_model(cfg, data.x_train.shape[1], data.num_class).to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    loss_of = loss_fn(data.num_class)
    gs = torch.Generator().manual_seed(cfg.seed)
    n_train = data.x_train.shape[0]
    slices = batch_slices(n_train, cfg.batch_size)
    columns = history_columns(cfg.depth, data.num_class, probes)
    hist = {c: np.full(cfg.epochs, np.nan) for c in columns}
    diverged, step, total = False, 0, cfg.total_steps(n_train)
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n_train, generator=gs)
        for k, (s, e) in enumerate(slices):
            if step == total:  # a steps budget ends within its last epoch
                break
            xb, yb = data.x_train[perm[s:e]], data.y_train[perm[s:e]]
            if probes and k == 0:  # before the epoch's first step, on its batch
                for name, v in probe_model(model, loss_of, xb, yb, cfg.lr).items():
                    hist[name][epoch] = v
            loss = loss_of(model(xb), yb)
            if not torch.isfinite(loss):
                diverged = True
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        if diverged or not _record_epoch(model, data, hist, epoch, cfg.activation == "relu"):
            diverged = True
            break
        hist["step"][epoch] = step
    if diverged:  # the probes of an epoch that did not finish are not kept
        for name in PROBE_COLUMNS if probes else ():
            hist[name][epoch:] = np.nan
    precise = _precise(model, data, diverged)
    return RunResult(cfg, hist, diverged, _state(model), _final(model), precise, baseline)


def _record_epoch(model: MLP, data: Split, hist: dict, epoch: int, relu: bool) -> bool:
    """Eval-mode metrics and diagnostics after an epoch; False if a metric is not finite."""
    train, acts = evaluate(model, data.x_train, data.y_train, data.num_class)
    test, _ = evaluate(model, data.x_test, data.y_test, data.num_class)
    if not all(math.isfinite(v) for v in (*train.values(), *test.values())):
        return False
    for name in train:
        hist[f"train_{name}"][epoch], hist[f"test_{name}"][epoch] = train[name], test[name]
    for i, lin in enumerate(model.linears(), start=1):
        w, grad = lin.weight.detach(), lin.weight.grad
        hist[f"weight_std_l{i}"][epoch] = _std(w)
        hist[f"grad_std_l{i}"][epoch] = _std(grad)
        hist[f"weight_norm_l{i}"][epoch] = float(w.norm())
        hist[f"grad_ratio_l{i}"][epoch] = float(grad.norm() / w.norm())
    if relu:
        # A unit is dead when its ReLU output is zero on every train row.
        dead = torch.cat([(a <= 0).all(dim=0) for a in acts])
        hist["dead_fraction"][epoch] = float(dead.to(torch.float64).mean())
    return True


def _final(model: MLP) -> dict[str, list]:
    return {
        "bn_running_mean": [n.running_mean.tolist() for n in model.batch_norms()],
        "bn_running_var": [n.running_var.tolist() for n in model.batch_norms()],
        "weight_grad": [
            (lin.weight.grad.flatten().tolist() if lin.weight.grad is not None else [])
            for lin in model.linears()
        ],
    }


def _state(model: MLP) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _precise(model: MLP, data: Split, diverged: bool) -> dict[str, float]:
    """Test metrics with precise BN statistics (precise_bn.py); none without BatchNorm
    (a norm without batch statistics has no statistics to make precise)."""
    if not model.batch_norms():
        return {}
    if diverged:
        return dict.fromkeys(("ce", "accuracy") if data.num_class else ("mse",), math.nan)
    precise = precise_model(model, data.x_train)
    return evaluate(precise, data.x_test, data.y_test, data.num_class)[0]
