"""One MLP class built from a run's configuration (SPEC 4)."""

from __future__ import annotations

import torch
from torch import nn

from bnmodels.experiment.config import RunConfig

ACTIVATION_FNS = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}


class Block(nn.Module):
    """Linear -> [BN] -> activation -> [BN], the BN's place set by `bn`."""

    def __init__(self, k: int, width: int, activation: str, bn: str, momentum: float):
        super().__init__()
        self.linear = nn.Linear(k, width)
        self.norm = nn.BatchNorm1d(width, momentum=momentum) if bn != "none" else None
        self.activation, self.bn = activation, bn
        self.act = ACTIVATION_FNS[activation]

    def forward(self, x):  # (batch, k) -> (batch, width)
        z = self.linear(x)
        if self.bn == "pre":
            z = self.norm(z)
        a = self.act(z)
        if self.bn == "post":
            a = self.norm(a)
        return a


class MLP(nn.Module):
    """`depth` hidden blocks then Linear(width, 1), or Linear(width, num_class): one logit
    per class for a classification data set.

    Layers are constructed in SPEC order (Linear 1, its BN, Linear 2, ..., output), so
    under `torch.manual_seed(seed)` the initial weights are those of the same stack built
    by hand; BatchNorm's init draws no random numbers.
    """

    def __init__(
        self,
        in_features: int,
        depth: int,
        width: int,
        activation: str = "sigmoid",
        bn: str = "none",
        momentum: float = 0.1,
        num_class: int = 0,
    ):
        super().__init__()
        sizes = [in_features] + [width] * depth
        self.blocks = nn.ModuleList(Block(k, width, activation, bn, momentum) for k in sizes[:-1])
        self.out = nn.Linear(width, num_class or 1)

    def forward(self, x):  # (batch, features) -> (batch, 1) or (batch, num_class)
        for block in self.blocks:
            x = block(x)
        return self.out(x)

    def linears(self) -> list[nn.Linear]:
        return [b.linear for b in self.blocks] + [self.out]

    def norms(self) -> list[nn.BatchNorm1d]:
        return [b.norm for b in self.blocks if b.norm is not None]


def apply_init(model: MLP, init: str) -> None:
    """SPEC 4: re-initialize every Linear weight in order; biases keep their default."""
    for lin in model.linears():
        if init == "xavier":
            nn.init.xavier_uniform_(lin.weight)
        elif init == "kaiming":
            nn.init.kaiming_uniform_(lin.weight, nonlinearity="relu")


def build_model(cfg: RunConfig, in_features: int, num_class: int = 0) -> MLP:
    """The run's initial model: seeded, constructed in order, then `init` applied.
    `num_class` > 0 gives one output per class (a classification data set)."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.default_generator.manual_seed(cfg.seed)  # torch.manual_seed, CPU part only
        model = MLP(
            in_features, cfg.depth, cfg.width, cfg.activation, cfg.bn, cfg.momentum, num_class
        )
        apply_init(model, cfg.init)
    return model
