"""One group of runs as stacked tensors: its state, its layers, an SGD step, evaluation.

Runs that share the shape of the computation (depth, width, batch size, features, rows,
classes) are one `Group`: weights stacked as (R, in, out), biases as (R, 1, out), BN
state per position and layer as (R, 1, w). Every layer is a forward that returns
(out, cache) and a backward that takes the cache, side by side.

Within a group, runs may differ in activation, BN mode, init, lr, momentum, seed, data
set and normalization: BatchNorm (before or after the activation) and the activations
are computed for the whole group and selected per run with `torch.where`; a run
without BN at a position simply ignores that position's result. Every op acts on each
run's lanes independently (batched matmul per run, batch norm over each run's own rows,
elementwise ops, reductions over one run's rows), so a run's arithmetic does not depend
on what else is in its group; tests check that bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bnmodels.experiment.config import RunConfig
from bnmodels.experiment.data import Split
from bnmodels.training.model import build_model

BN_EPS = 1e-5
BN_KEYS = ("weight", "bias", "running_mean", "running_var")  # per-run BN state


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
            (x - st["running_mean"]) * torch.rsqrt(st["running_var"] + BN_EPS),
            st["weight"],
        ), None
    n = x.shape[1]
    mean = x.mean(dim=1, keepdim=True)  # (R, 1, w)
    xc = x - mean
    var = (xc * xc).mean(dim=1, keepdim=True)  # biased: what BatchNorm normalizes with
    inv = torch.rsqrt(var + BN_EPS)
    xhat = xc * inv  # (R, B, w)
    # Running statistics use the unbiased variance, like PyTorch.
    st["running_mean"].lerp_(mean, st["momentum"])
    st["running_var"].lerp_(var * (n / (n - 1)), st["momentum"])
    return torch.addcmul(st["bias"], xhat, st["weight"]), (xhat, inv)


def _bn_backward(grad_y, st: dict, cache, update: bool = True):
    """dL/dy (R, B, w) -> dL/dx (R, B, w); SGD-updates gamma and beta, or with
    `update=False` returns (dL/dx, dL/dgamma, dL/dbeta) and changes nothing."""
    xhat, inv = cache
    n = grad_y.shape[1]
    grad_gamma = (grad_y * xhat).sum(dim=1, keepdim=True)  # (R, 1, w)
    grad_beta = grad_y.sum(dim=1, keepdim=True)
    # dL/dx = gamma * inv * (dL/dy - mean(dL/dy) - xhat * mean(dL/dy * xhat))
    centered = torch.sub(grad_y, torch.addcmul(grad_beta, xhat, grad_gamma), alpha=1 / n)
    grad_x = centered * (inv * st["weight"])
    if not update:
        return grad_x, grad_gamma, grad_beta
    st["weight"].addcmul_(grad_gamma, st["lr"], value=-1)
    st["bias"].addcmul_(grad_beta, st["lr"], value=-1)
    return grad_x


_ACT = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}
# Derivatives from the activation's output a: sigmoid a(1-a), tanh 1-a^2, relu [a > 0].
_ACT_GRAD = {
    "sigmoid": torch.ops.aten.sigmoid_backward,
    "tanh": torch.ops.aten.tanh_backward,
    "relu": lambda g, a: torch.ops.aten.threshold_backward(g, a, 0),
}


class Init:
    """Initial weights of reference models, cached: they depend only on (seed, features,
    depth, width, init, classes), not on activation, BN mode, lr or momentum."""

    def __init__(self):
        self.cache: dict[tuple, list[torch.Tensor]] = {}

    def __call__(self, cfg: RunConfig, features: int, num_class: int = 0) -> list[torch.Tensor]:
        key = (cfg.seed, features, cfg.depth, cfg.width, cfg.init, num_class)
        if key not in self.cache:
            model = build_model(cfg, features, num_class)
            self.cache[key] = [
                t.detach() for lin in model.linears() for t in (lin.weight.T, lin.bias)
            ]
        return self.cache[key]


class _Identity:
    """A BN position that no run of the group uses: nothing to compute."""

    @staticmethod
    def forward(x, training: bool):
        return x, None

    @staticmethod
    def backward(cache, grad_y, update: bool = True):
        return grad_y if update else (grad_y, [])


class _MaskedBN:
    """BatchNorm at one position (before or after the activation) of one hidden layer, for
    the runs of the group that have BN there; the other runs pass their input through.

    `runs` is an (R, 1, 1) bool mask of those runs, or None when every run of the group
    has BN here (then the select is skipped: `torch.where` costs a kernel per call).
    """

    def __init__(self, state: dict, runs: torch.Tensor | None):
        self.state, self.runs = state, runs

    def forward(self, x, training: bool):
        """x (R, B, w) -> (y (R, B, w), cache for `backward`; None in eval mode)."""
        y, cache = _bn_forward(x, self.state, training)
        return (y if self.runs is None else torch.where(self.runs, y, x)), cache

    def backward(self, cache, grad_y, update: bool = True):
        """dL/dy (R, B, w) -> dL/dx (R, B, w); SGD-updates gamma and beta of BN runs.

        With `update=False` changes nothing and returns (dL/dx, [(parameter, gradient,
        runs)] for gamma and beta).
        """
        if not update:
            grad_x, grad_gamma, grad_beta = _bn_backward(grad_y, self.state, cache, False)
            if self.runs is not None:
                grad_x = torch.where(self.runs, grad_x, grad_y)
            st = self.state
            return grad_x, [
                (st["weight"], grad_gamma, self.runs),
                (st["bias"], grad_beta, self.runs),
            ]
        grad_x = _bn_backward(grad_y, self.state, cache)
        return grad_x if self.runs is None else torch.where(self.runs, grad_x, grad_y)


class Group:
    """One group's stacked state, and its layers as forward/backward pairs.

    Shapes: R runs, B rows of a batch, F input features, w hidden width; weights are
    stacked as (R, in, out) and biases as (R, 1, out), so a layer is one batched product.
    """

    def __init__(
        self,
        cfgs: Sequence[RunConfig],
        datas: Sequence[Split],
        device,
        dtype,
        init: Init,
        broadcast: bool | None = None,
    ):
        self.cfgs = list(cfgs)
        c0, R = cfgs[0], len(cfgs)
        self.R, self.depth, self.width = R, c0.depth, c0.width
        self.device, self.dtype = device, dtype
        self.bcast = device.type == "cuda" if broadcast is None else broadcast
        kw = dict(device=device, dtype=dtype)

        # Data: unique splits stacked once, each run points at its own.  (D, n, F)
        uniq: dict[int, int] = {}
        for d in datas:
            uniq.setdefault(id(d), len(uniq))
        by_id = {id(d): d for d in datas}
        order = sorted(uniq, key=uniq.get)
        # Labels: (D, n, 1) floats, or (D, n) int64 class indices for a classifier.
        self.num_class = datas[0].num_class
        ykw = dict(device=device) if self.num_class else kw
        self.x_train = torch.stack([by_id[i].x_train for i in order]).to(**kw)
        self.y_train = torch.stack([by_id[i].y_train for i in order]).to(**ykw)
        self.x_test = torch.stack([by_id[i].x_test for i in order]).to(**kw)
        self.y_test = torch.stack([by_id[i].y_test for i in order]).to(**ykw)
        self.data_idx = torch.tensor([uniq[id(d)] for d in datas], device=device)  # (R,)

        # Weights: (R, in, out) and biases (R, 1, out), layer 0 first, the output last.
        feats = datas[0].x_train.shape[1]
        per_run = [init(c, feats, self.num_class) for c in cfgs]
        self.weights, self.biases = [], []
        for j in range(self.depth + 1):
            self.weights.append(torch.stack([p[2 * j] for p in per_run]).to(**kw))
            self.biases.append(torch.stack([p[2 * j + 1] for p in per_run]).unsqueeze(1).to(**kw))
        self.lr = torch.tensor([c.lr for c in cfgs], **kw).view(R, 1, 1)  # (R, 1, 1)

        # BatchNorm per position and hidden layer: a run uses the layer of its own
        # position; a position that no run uses is an identity.
        momentum = torch.tensor([c.momentum for c in cfgs], **kw).view(R, 1, 1)
        self.bn_state: dict[str, list[dict]] = {}  # position -> per layer, (R, 1, w) each
        self.bn: dict[str, list] = {}  # position -> per layer, _MaskedBN or _Identity
        for pos in ("pre", "post"):
            on = [c.bn == pos for c in cfgs]
            if not any(on):
                self.bn[pos] = [_Identity] * self.depth
                continue
            runs = None if all(on) else torch.tensor(on, device=device).view(R, 1, 1)
            self.bn_state[pos] = [self._bn_init(momentum, kw) for _ in range(self.depth)]
            self.bn[pos] = [_MaskedBN(st, runs) for st in self.bn_state[pos]]

        # Activations in use, each with its (R, 1, 1) mask; the last needs no mask.
        acts = [c.activation for c in cfgs]
        used = [a for a in ("sigmoid", "tanh", "relu") if a in acts]
        self.act_masks = [
            (a, torch.tensor([x == a for x in acts], device=device).view(R, 1, 1)) for a in used
        ]
        self.relu_runs = torch.tensor([a == "relu" for a in acts], device=device)  # (R,)

    def _bn_init(self, momentum, kw) -> dict:
        R, w = self.R, self.width
        return {
            "weight": torch.ones(R, 1, w, **kw),
            "bias": torch.zeros(R, 1, w, **kw),
            "running_mean": torch.zeros(R, 1, w, **kw),
            "running_var": torch.ones(R, 1, w, **kw),
            "momentum": momentum,
            "lr": self.lr,
        }

    # -- layers: each a forward returning (out, cache) and a backward taking the cache --
    # Autograd would record ~3x more ops per step; these networks are so small that op
    # count, not arithmetic, sets the speed. Tests check the gradients against autograd's
    # reference engine in float64.

    def act_forward(self, z):
        """z (R, B, w) -> each run's activation of it; the output is its own cache."""
        (last, _), *rest = self.act_masks[::-1]
        a = _ACT[last](z)
        for name, mask in rest:
            a = torch.where(mask, _ACT[name](z), a)
        return a

    def _act_backward(self, a, grad_a):
        """dL/da -> dL/dz, from the activation's output a (R, B, w)."""
        (last, _), *rest = self.act_masks[::-1]
        grad_z = _ACT_GRAD[last](grad_a, a)
        for name, mask in rest:
            grad_z = torch.where(mask, _ACT_GRAD[name](grad_a, a), grad_z)
        return grad_z

    # Per-run products of tiny matrices (k, w <= a few units). On the CPU, batched BLAS;
    # on CUDA, cuBLAS's batched kernels are 5-8x slower at 100,000 runs than a
    # broadcast product summed over the short axis (measured on an H200), so use that.
    def affine(self, h, W, b):  # (R, B, k) @ (R, k, w) + (R, 1, w)
        if self.bcast:
            return (h.unsqueeze(-1) * W.unsqueeze(1)).sum(dim=2) + b
        return torch.baddbmm(b, h, W)

    def _back(self, grad, W):  # (R, B, w) @ (R, k, w)^T -> (R, B, k)
        if self.bcast:
            return (grad.unsqueeze(2) * W.unsqueeze(1)).sum(dim=3)
        return torch.bmm(grad, W.transpose(1, 2))

    def _outer(self, h, grad):  # (R, B, k)^T @ (R, B, w) -> (R, k, w)
        if self.bcast:
            return (h.unsqueeze(-1) * grad.unsqueeze(2)).sum(dim=1)
        return torch.bmm(h.transpose(1, 2), grad)

    def _linear_backward(self, j: int, h, grad_z, want_grad: bool, update: bool = True):
        """Layer j's SGD step from dL/dz (R, B, out) and its input h (R, B, in).

        Returns dL/dh (None for the first layer, which needs none), computed before the
        weights change, and the weight gradient (R, in, out) if asked. With
        `update=False` changes nothing and returns (dL/dh, [(W, dL/dW, None), (b, dL/db,
        None)]).
        """
        W = self.weights[j]
        grad_h = self._back(grad_z, W) if j > 0 else None
        grad_W = self._outer(h, grad_z) if want_grad or not update else None
        if not update:
            grad_b = grad_z.sum(dim=1, keepdim=True)  # (R, 1, out)
            return grad_h, [(W, grad_W, None), (self.biases[j], grad_b, None)]
        step = grad_z * self.lr  # the step folded into the gradient, (R, B, out)
        W.sub_(self._outer(h, step))
        self.biases[j].sub_(step.sum(dim=1, keepdim=True))
        return grad_h, grad_W

    def _block_forward(self, j: int, h, training: bool):
        """Hidden layer j: Linear -> [BN pre] -> activation -> [BN post], per run.

        h (R, B, in) -> (out (R, B, w), activation (R, B, w), cache for the backward).
        """
        z = self.affine(h, self.weights[j], self.biases[j])
        z, pre_cache = self.bn["pre"][j].forward(z, training)
        a = self.act_forward(z)
        out, post_cache = self.bn["post"][j].forward(a, training)
        return out, a, (h, a, pre_cache, post_cache)

    def _block_backward(self, j: int, cache, grad_out, want_grad: bool):
        """dL/d(block output) -> dL/d(block input), updating the block's parameters."""
        h, a, pre_cache, post_cache = cache
        grad_a = self.bn["post"][j].backward(post_cache, grad_out)
        grad_z = self.bn["pre"][j].backward(pre_cache, self._act_backward(a, grad_a))
        return self._linear_backward(j, h, grad_z, want_grad)

    def _block_gradients(self, j: int, cache, grad_out):
        """`_block_backward` without the update: (dL/d(block input), [(parameter, its
        gradient, runs that use it or None for all)])."""
        h, a, pre_cache, post_cache = cache
        grad_a, post = self.bn["post"][j].backward(post_cache, grad_out, update=False)
        grad_act = self._act_backward(a, grad_a)
        grad_z, pre = self.bn["pre"][j].backward(pre_cache, grad_act, update=False)
        grad_h, linear = self._linear_backward(j, h, grad_z, True, update=False)
        return grad_h, linear + pre + post

    @torch.no_grad()
    def loss_and_gradients(self, xb, yb):
        """Each run's batch loss (R,) in train mode and the gradient of every parameter,
        as [(parameter, gradient, runs that use it or None for all)], changing no
        parameter (BN running statistics do move: see `snapshot`)."""
        out, _, caches = self.forward(xb, training=True)
        grad, params = self._linear_backward(
            self.depth, caches[-1], self._loss_grad(out, yb), True, update=False
        )
        for j in range(self.depth - 1, -1, -1):
            grad, block = self._block_gradients(j, caches[j], grad)
            params += block
        return self._loss(out, yb), params

    def snapshot(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(tensor, copy) of every parameter and BN running statistic; `restore` puts the
        copies back, bit for bit."""
        bn = [st[k] for layers in self.bn_state.values() for st in layers for k in BN_KEYS]
        return [(t, t.clone()) for t in self.weights + self.biases + bn]

    @staticmethod
    def restore(snapshot) -> None:
        for t, saved in snapshot:
            t.copy_(saved)

    @torch.no_grad()
    def forward(self, x, training: bool = False):
        """x (R, B, F) -> predictions (R, B, 1), each hidden activation (R, B, w), and the
        caches of every layer for `sgd_step` (the output layer's is its input)."""
        h, acts, caches = x, [], []
        for j in range(self.depth):
            h, a, cache = self._block_forward(j, h, training)
            acts.append(a)
            caches.append(cache)
        caches.append(h)
        return self.affine(h, self.weights[-1], self.biases[-1]), acts, caches

    def _loss(self, out, yb):
        """Each run's mean batch loss (R,): MSE, or cross-entropy of the logits."""
        if not self.num_class:
            d = out - yb
            return (d * d).mean(dim=(1, 2))
        return (torch.logsumexp(out, dim=2) - out.gather(2, yb.unsqueeze(2)).squeeze(2)).mean(1)

    def _loss_grad(self, out, yb):
        """dL/d(out) of each run's batch loss: MSE of (R, B, 1) predictions, or the
        cross-entropy of (R, B, C) logits against (R, B) labels (softmax minus one-hot)."""
        n = out.shape[1]
        if not self.num_class:
            return (out - yb) * (2.0 / n)
        onehot = torch.nn.functional.one_hot(yb, self.num_class).to(out.dtype)
        return (torch.softmax(out, dim=2) - onehot) / n

    @torch.no_grad()
    def sgd_step(self, xb, yb, want_grads: bool = False) -> list | None:
        """One SGD step of every run on its own batch (xb (R, B, F), yb (R, B, 1) or
        (R, B) labels). Returns the weight gradients of this step if asked (diagnostics)."""
        out, _, caches = self.forward(xb, training=True)
        grad = self._loss_grad(out, yb)
        grad, grad_out_W = self._linear_backward(self.depth, caches[-1], grad, want_grads)
        grads = [grad_out_W]
        for j in range(self.depth - 1, -1, -1):
            grad, grad_W = self._block_backward(j, caches[j], grad, want_grads)
            grads.append(grad_W)
        return grads[::-1] if want_grads else None

    @torch.no_grad()
    def evaluate(self, x, y):
        """Eval mode: {"mse": (R,)} or {"ce": (R,), "accuracy": (R,) float64}, and the
        hidden activations."""
        out, acts, _ = self.forward(x)
        if not self.num_class:
            return {"mse": self._loss(out, y)}, acts
        # argmax picks the lowest index among tied logits (SPEC 4); counts are exact.
        hits = out.argmax(dim=2) == y
        return {"ce": self._loss(out, y), "accuracy": hits.to(torch.float64).mean(dim=1)}, acts
