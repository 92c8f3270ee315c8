"""One MLP class built from a run's configuration (SPEC 4)."""

from __future__ import annotations

import torch
from torch import nn

from bnmodels.experiment.config import RunConfig
from bnmodels.training import block
from bnmodels.training.block import NO_NORM, Norm

ACTIVATION_FNS = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}


class Block(nn.Module):
    """One hidden block (`bnmodels.training.block`): Linear -> [norm] -> activation ->
    [norm], the norm's kind and placement given by `norm`."""

    def __init__(self, k: int, width: int, activation: str, norm: Norm, momentum: float):
        super().__init__()
        self.linear = nn.Linear(k, width)
        self.norm = norm.module(width, momentum)
        self.activation, self.spec = activation, norm
        self.act = ACTIVATION_FNS[activation]

    def norm_at(self, position: str) -> nn.Module | None:
        """The norm at "pre" or "post", or None."""
        return self.norm if self.spec.at_position(position) else None

    def forward(self, x):  # (batch, k) -> (batch, width)
        return self.forward_with_activation(x)[0]

    def forward_with_activation(self, x):
        """(block output, activation output), both (batch, width)."""
        return block.forward(x, self.linear, self.act, self.norm_at("pre"), self.norm_at("post"))


class MLP(nn.Module):
    """`depth` hidden blocks then Linear(width, 1), or Linear(width, num_class): one logit
    per class for a classification data set.

    Layers are constructed in SPEC order (Linear 1, its norm, Linear 2, ..., output), so
    under `torch.manual_seed(seed)` the initial weights are those of the same stack built
    by hand; no norm's init draws random numbers.
    """

    def __init__(
        self,
        in_features: int,
        depth: int,
        width: int,
        activation: str = "sigmoid",
        norm: Norm = NO_NORM,
        momentum: float = 0.1,
        num_class: int = 0,
    ):
        super().__init__()
        sizes = [in_features] + [width] * depth
        self.blocks = nn.ModuleList(Block(k, width, activation, norm, momentum) for k in sizes[:-1])
        self.out = nn.Linear(width, num_class or 1)

    def forward(self, x):  # (batch, features) -> (batch, 1) or (batch, num_class)
        for b in self.blocks:
            x = b(x)
        return self.out(x)

    def linears(self) -> list[nn.Linear]:
        return [b.linear for b in self.blocks] + [self.out]

    def batch_norms(self) -> list[nn.BatchNorm1d]:
        """The BatchNorm layers (those with running statistics), first block first."""
        return [b.norm for b in self.blocks if b.spec.batch_statistics]


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
            in_features,
            cfg.depth,
            cfg.width,
            cfg.activation,
            Norm.of(cfg),
            cfg.momentum,
            num_class,
        )
        apply_init(model, cfg.init)
    return model
