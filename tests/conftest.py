"""Shared fixtures: one CPU thread, a tiny params file, and a hand-built reference model.

The reference model and training loop here follow SPEC 4 literally with plain torch.nn, so
that tests compare the library against PyTorch itself, never against its own code.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import yaml
from configs import RUN_DEFAULTS
from torch import nn

# Bits depend on the thread count (SPEC, Precision); fix it before any test runs.
torch.set_num_threads(1)

TINY_PARAMS = {
    "datasets": {
        "quad2": {
            "num_examples": 40,
            "w": [2, -1],
            "bias": False,
            "delta": 0.01,
            "deg": 2,
            "seed": 420,
            "train_fraction": 0.7,
        },
    },
    "defaults": {**RUN_DEFAULTS, "epochs": 2},
    "sweeps": {
        "placement": {"activation": ["sigmoid", "tanh"], "bn": ["none", "pre", "post"]},
        "depth": {"depth": [1, 2], "seed": [24, 25]},
    },
}


@pytest.fixture
def raw_params():
    """A fresh, valid, tiny params mapping (28 train rows) that a test may edit."""
    return copy.deepcopy(TINY_PARAMS)


@pytest.fixture
def write_params(tmp_path):
    """Write a mapping (dumped as YAML) or a text verbatim to tmp_path/params.yaml."""

    def write(content, name="params.yaml"):
        path = tmp_path / name
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text)
        return path

    return write


ACTIVATION_MODULES = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}


def _reference_mlp(in_features, depth, width, activation, bn, momentum, init, seed, outputs=1):
    """SPEC 4 by hand: seed, construct the layers in order, then re-init Linear weights."""
    torch.manual_seed(seed)
    layers, k = [], in_features
    for _ in range(depth):
        layers.append(nn.Linear(k, width))
        if bn == "pre":
            layers += [nn.BatchNorm1d(width, momentum=momentum), ACTIVATION_MODULES[activation]()]
        elif bn == "post":
            layers += [ACTIVATION_MODULES[activation](), nn.BatchNorm1d(width, momentum=momentum)]
        else:
            layers.append(ACTIVATION_MODULES[activation]())
        k = width
    layers.append(nn.Linear(width, outputs))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            if init == "xavier":
                nn.init.xavier_uniform_(layer.weight)
            elif init == "kaiming":
                nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    return nn.Sequential(*layers)


@pytest.fixture
def reference_mlp():
    """Build the SPEC 4 network as a plain nn.Sequential (changes the global RNG state)."""
    return _reference_mlp


def _hand_train(cfg, split, dtype=torch.float32, on_epoch=None):
    """SPEC 4's training loop in plain PyTorch; returns (model, train_mse, test_mse, steps).

    Stops at the first non-finite loss or metric, leaving the remaining epochs missing;
    with a steps budget (`cfg.steps`), after that many optimizer steps.
    `on_epoch(model)`, if given, is called after each completed epoch's metrics.
    """
    xtr, ytr, xte, yte = (t.to(dtype) for t in split.tensors())
    model = _reference_mlp(
        xtr.shape[1],
        cfg.depth,
        cfg.width,
        cfg.activation,
        cfg.bn,
        cfg.momentum,
        cfg.init,
        cfg.seed,
    ).to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    gs = torch.Generator().manual_seed(cfg.seed)
    n = xtr.shape[0]
    train_mse, test_mse, steps = [], [], 0
    for _ in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gs)
        for start in range(0, n, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            if len(idx) == 1 or steps == cfg.steps:
                continue
            loss = nn.functional.mse_loss(model(xtr[idx]), ytr[idx])
            if not torch.isfinite(loss):
                return model, train_mse, test_mse, steps
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        model.eval()
        with torch.no_grad():
            a = nn.functional.mse_loss(model(xtr), ytr).item()
            b = nn.functional.mse_loss(model(xte), yte).item()
        if not (math.isfinite(a) and math.isfinite(b)):
            return model, train_mse, test_mse, steps
        train_mse.append(a)
        test_mse.append(b)
        if on_epoch is not None:
            on_epoch(model)
    return model, train_mse, test_mse, steps


@pytest.fixture
def hand_train():
    """SPEC 4's training loop written with plain torch.nn, independent of bnmodels."""
    return _hand_train
