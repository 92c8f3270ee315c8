"""The hidden block of SPEC 4, defined once: Linear -> [norm] -> activation -> [norm].

Every engine builds its hidden layers from `forward` and from `Norm` (what a run's
normalization is: its kind and its placement), as micrograd's MLP builds every layer
from one Layer:

- placement (`norm_at`): "pre", the norm normalizes the Linear output before the
  activation; "post", it normalizes the activation's output; "none", no norm;
- kind (`norm`): "batch" normalizes each unit over the batch's rows (train mode) or
  with running statistics (eval mode), as torch.nn.BatchNorm1d(width); "layer"
  normalizes each row over the layer's units, as torch.nn.LayerNorm(width); "group"
  normalizes each row over each of `groups` equal groups of consecutive units, as
  torch.nn.GroupNorm(groups, width); "rms" divides each row by the root mean square of
  its units, as torch.nn.RMSNorm(width, eps=1e-5) (no centring, no shift). Each has a
  learned scale per unit, and all but "rms" a learned shift; eps = 1e-5 throughout
  (RMSNorm's own default would follow the dtype). Only "batch" uses batch statistics,
  so only it has running statistics, precise statistics (precise_bn.py) and a train/eval
  difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

EPS = 1e-5  # every norm's eps: torch's default for BatchNorm1d, LayerNorm and GroupNorm
POSITIONS = ("pre", "post")  # where a norm may sit: before or after the activation


@dataclass(frozen=True)
class Norm:
    """One run's normalization: kind (config.NORMS), placement
    ("pre", "post", "none") and groups (group normalization's; 0 otherwise)."""

    kind: str  # "none", "batch", "layer", "group" or "rms"
    at: str
    groups: int = 0

    @classmethod
    def of(cls, cfg) -> Norm:
        """The normalization of a RunConfig."""
        return cls(cfg.norm, cfg.norm_at, cfg.groups)

    def at_position(self, position: str) -> bool:
        """Whether this norm sits at `position` ("pre" or "post")."""
        return self.kind != "none" and self.at == position

    @property
    def batch_statistics(self) -> bool:
        """Whether the norm uses batch statistics (and so has running statistics)."""
        return self.kind == "batch"

    def module(self, width: int, momentum: float) -> nn.Module | None:
        """The torch module of this norm for a layer of `width` units (None: no norm)."""
        if self.kind == "batch":
            return nn.BatchNorm1d(width, eps=EPS, momentum=momentum)
        if self.kind == "layer":
            return nn.LayerNorm(width, eps=EPS)
        if self.kind == "group":
            return nn.GroupNorm(self.groups, width, eps=EPS)
        if self.kind == "rms":
            return nn.RMSNorm(width, eps=EPS)
        return None


NO_NORM = Norm("none", "none")


def _identity(x):
    return x


def forward(x, linear: Callable, act: Callable, pre: Callable | None, post: Callable | None):
    """One hidden block: linear, then `pre` (a norm before the activation, or None), the
    activation, then `post` (a norm after it, or None).

    Returns (the block's output, the activation's output): the latter is what the
    diagnostics read (dead ReLU units)."""
    z = (pre or _identity)(linear(x))
    a = act(z)
    return (post or _identity)(a), a
