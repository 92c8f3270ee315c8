"""The batched engine's normalization layers: a forward returning (out, cache) and a
backward taking the cache, side by side, for each kind of `bnmodels.training.block`
(batch, layer and group, RMS).

Shapes: x (R, B, w) for R runs, B rows, w units; per-run state tensors (R, 1, w). Each
op reduces within one run's lanes (BatchNorm over a run's own rows, layer and group
normalization over one row's units), so a run's numbers do not depend on its company.
A backward SGD-updates the scale and shift (gamma, beta), or with `update=False`
returns (dL/dx, dL/dgamma, dL/dbeta) and changes nothing.
"""

from __future__ import annotations

import torch

from bnmodels.training.block import EPS, POSITIONS, Norm

BN_KEYS = ("weight", "bias", "running_mean", "running_var")  # BatchNorm's per-run state
AFFINE_KEYS = ("weight", "bias")  # the state of a norm without batch statistics
SCALE_KEYS = ("weight",)  # RMS normalization's: a scale, no shift


def _bn_forward(x, st: dict, training: bool):
    """BatchNorm1d over each run's own rows: x (R, B, w), state tensors (R, 1, w).

    Written out rather than `F.batch_norm` over (B, R*w) channels: that kernel's backward
    reduces differently depending on the channel count, so a run's gradients would depend
    on how many runs share its group. Means and sums over dim 1 reduce one run's rows in
    the same order whatever R is. Returns (y, cache for the backward pass).
    """
    if not training:
        return torch.addcmul(
            st["bias"],
            (x - st["running_mean"]) * torch.rsqrt(st["running_var"] + EPS),
            st["weight"],
        ), None
    n = x.shape[1]
    mean = x.mean(dim=1, keepdim=True)  # (R, 1, w)
    xc = x - mean
    var = (xc * xc).mean(dim=1, keepdim=True)  # biased: what BatchNorm normalizes with
    inv = torch.rsqrt(var + EPS)
    xhat = xc * inv  # (R, B, w)
    # Running statistics use the unbiased variance, like PyTorch.
    st["running_mean"].lerp_(mean, st["momentum"])
    st["running_var"].lerp_(var * (n / (n - 1)), st["momentum"])
    return torch.addcmul(st["bias"], xhat, st["weight"]), (xhat, inv)


def _bn_backward(grad_y, st: dict, cache, update: bool = True):
    """dL/dy (R, B, w) -> dL/dx (R, B, w) (BatchNorm, train mode)."""
    xhat, inv = cache
    n = grad_y.shape[1]
    grad_gamma = (grad_y * xhat).sum(dim=1, keepdim=True)  # (R, 1, w)
    grad_beta = grad_y.sum(dim=1, keepdim=True)
    # dL/dx = gamma * inv * (dL/dy - mean(dL/dy) - xhat * mean(dL/dy * xhat))
    centered = torch.sub(grad_y, torch.addcmul(grad_beta, xhat, grad_gamma), alpha=1 / n)
    grad_x = centered * (inv * st["weight"])
    return _step(st, grad_x, grad_gamma, grad_beta, update)


def _gn_forward(x, st: dict, training: bool):
    """Group normalization of each row over `st["groups"]` groups of consecutive units
    (layer normalization: one group), as torch.nn.GroupNorm / LayerNorm: x (R, B, w).
    The same in train and eval mode. Returns (y, cache for the backward pass)."""
    R, B, w = x.shape
    xg = x.reshape(R, B, st["groups"], w // st["groups"])  # (R, B, G, w/G)
    mean = xg.mean(dim=3, keepdim=True)  # (R, B, G, 1)
    xc = xg - mean
    var = (xc * xc).mean(dim=3, keepdim=True)  # biased, as torch's
    inv = torch.rsqrt(var + EPS)
    xhat = xc * inv  # (R, B, G, w/G)
    return torch.addcmul(st["bias"], xhat.reshape(R, B, w), st["weight"]), (xhat, inv)


def _gn_backward(grad_y, st: dict, cache, update: bool = True):
    """dL/dy (R, B, w) -> dL/dx (R, B, w) (group or layer normalization)."""
    xhat, inv = cache  # (R, B, G, w/G), (R, B, G, 1)
    R, B, w = grad_y.shape
    grad_gamma = (grad_y * xhat.reshape(R, B, w)).sum(dim=1, keepdim=True)  # (R, 1, w)
    grad_beta = grad_y.sum(dim=1, keepdim=True)
    # per group: dL/dx = inv * (g - mean(g) - xhat * mean(g * xhat)), g = gamma dL/dy
    g = (grad_y * st["weight"]).reshape(xhat.shape)
    mean_g = g.mean(dim=3, keepdim=True)
    mean_gx = (g * xhat).mean(dim=3, keepdim=True)
    grad_x = ((g - mean_g - xhat * mean_gx) * inv).reshape(R, B, w)
    return _step(st, grad_x, grad_gamma, grad_beta, update)


def _rms_forward(x, st: dict, training: bool):
    """RMS normalization of each row over its units, as torch.nn.RMSNorm(w, eps): x (R, B,
    w), no shift. The same in train and eval mode. Returns (y, cache for the backward)."""
    inv = torch.rsqrt((x * x).mean(dim=2, keepdim=True) + EPS)  # (R, B, 1)
    xhat = x * inv
    return xhat * st["weight"], (xhat, inv)


def _rms_backward(grad_y, st: dict, cache, update: bool = True):
    """dL/dy (R, B, w) -> dL/dx (R, B, w) (RMS normalization; no shift: dL/dbeta None)."""
    xhat, inv = cache
    grad_gamma = (grad_y * xhat).sum(dim=1, keepdim=True)  # (R, 1, w)
    # dL/dx = inv * (g - xhat * mean(g * xhat)), g = gamma dL/dy
    g = grad_y * st["weight"]
    grad_x = (g - xhat * (g * xhat).mean(dim=2, keepdim=True)) * inv
    return _step(st, grad_x, grad_gamma, None, update)


def _step(st: dict, grad_x, grad_gamma, grad_beta, update: bool):
    if not update:
        return grad_x, grad_gamma, grad_beta
    st["weight"].addcmul_(grad_gamma, st["lr"], value=-1)
    if grad_beta is not None:
        st["bias"].addcmul_(grad_beta, st["lr"], value=-1)
    return grad_x


# kind -> (forward, backward, the state it keeps)
KINDS = {
    "batch": (_bn_forward, _bn_backward, BN_KEYS),
    "layer": (_gn_forward, _gn_backward, AFFINE_KEYS),
    "group": (_gn_forward, _gn_backward, AFFINE_KEYS),
    "rms": (_rms_forward, _rms_backward, SCALE_KEYS),
}


def init_state(norm: Norm, R: int, width: int, momentum, lr, kw) -> dict:
    """A fresh norm's state for R runs: gamma 1, beta 0 (no beta for RMS normalization;
    running mean 0, variance 1 for BatchNorm), as torch initializes its modules;
    `momentum`, `lr` (R, 1, 1)."""
    st = {"weight": torch.ones(R, 1, width, **kw), "lr": lr}
    if "bias" in KINDS[norm.kind][2]:
        st["bias"] = torch.zeros(R, 1, width, **kw)
    if norm.batch_statistics:
        st["running_mean"] = torch.zeros(R, 1, width, **kw)
        st["running_var"] = torch.ones(R, 1, width, **kw)
        st["momentum"] = momentum
    else:
        st["groups"] = norm.groups if norm.kind == "group" else 1
    return st


def tensors(st: dict) -> list[torch.Tensor]:
    """The state a norm changes as it trains (what a snapshot saves)."""
    return [st[k] for k in BN_KEYS if k in st]


class Identity:
    """A position that no run of the group normalizes at: nothing to compute."""

    @staticmethod
    def forward(x, training: bool):
        return x, None

    @staticmethod
    def backward(cache, grad_y, update: bool = True):
        return grad_y if update else (grad_y, [])


class Masked:
    """One kind of norm at one position of one hidden layer, for the runs of the group
    that have it there; the other runs pass their input through.

    `runs` is an (R, 1, 1) bool mask of those runs, or None when every run of the group
    has it here (then the select is skipped: `torch.where` costs a kernel per call).
    """

    def __init__(self, kind: str, state: dict, runs: torch.Tensor | None):
        self._forward, self._backward, _ = KINDS[kind]
        self.kind, self.state, self.runs = kind, state, runs

    def forward(self, x, training: bool):
        """x (R, B, w) -> (y (R, B, w), cache for `backward`; None in eval mode)."""
        y, cache = self._forward(x, self.state, training)
        return (y if self.runs is None else torch.where(self.runs, y, x)), cache

    def backward(self, cache, grad_y, update: bool = True):
        """dL/dy (R, B, w) -> dL/dx (R, B, w); SGD-updates gamma and beta of its runs.

        With `update=False` changes nothing and returns (dL/dx, [(parameter, gradient,
        runs)] for gamma and beta).
        """
        if not update:
            grad_x, grad_gamma, grad_beta = self._backward(grad_y, self.state, cache, False)
            if self.runs is not None:
                grad_x = torch.where(self.runs, grad_x, grad_y)
            grads = {"weight": grad_gamma, "bias": grad_beta}
            params = (k for k in AFFINE_KEYS if k in self.state)  # gamma, and beta if any
            return grad_x, [(self.state[k], grads[k], self.runs) for k in params]
        grad_x = self._backward(grad_y, self.state, cache)
        return grad_x if self.runs is None else torch.where(self.runs, grad_x, grad_y)


class Chain:
    """Every kind of norm used at one position of one hidden layer, applied in turn: the
    runs of each are disjoint, so each run passes through its own norm only."""

    def __init__(self, layers: list[Masked]):
        self.layers = layers

    def forward(self, x, training: bool):
        caches = []
        for layer in self.layers:
            x, cache = layer.forward(x, training)
            caches.append(cache)
        return x, caches

    def backward(self, caches, grad_y, update: bool = True):
        params = []
        for layer, cache in zip(self.layers[::-1], caches[::-1], strict=True):
            if update:
                grad_y = layer.backward(cache, grad_y)
            else:
                grad_y, p = layer.backward(cache, grad_y, update=False)
                params = p + params
        return grad_y if update else (grad_y, params)


def position_layers(norms: list[Norm], depth: int, width: int, momentum, lr, kw, device):
    """Each position's layers, per hidden layer, for runs with these norms: ({position:
    [layer per hidden layer]}, {(position, kind, groups): [state per hidden layer]})."""
    R = len(norms)
    layers, states = {}, {}
    for pos in POSITIONS:
        kinds = dict.fromkeys((n.kind, n.groups) for n in norms if n.at_position(pos))
        per_layer = [[] for _ in range(depth)]
        for kind, groups in kinds:
            on = [n.at_position(pos) and (n.kind, n.groups) == (kind, groups) for n in norms]
            runs = None if all(on) else torch.tensor(on, device=device).view(R, 1, 1)
            spec = Norm(kind, pos, groups)
            states[(pos, kind, groups)] = sts = [
                init_state(spec, R, width, momentum, lr, kw) for _ in range(depth)
            ]
            for j, st in enumerate(sts):
                per_layer[j].append(Masked(kind, st, runs))
        # one kind: the layer itself (BatchNorm alone costs what it did before)
        layers[pos] = [Chain(ls) if len(ls) > 1 else ls[0] if ls else Identity for ls in per_layer]
    return layers, states
