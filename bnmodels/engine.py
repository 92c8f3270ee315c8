"""The batched engine: many runs trained side by side as one computation.

These networks hold a few dozen weights, so one run is pure per-op overhead. Here a
*group* of runs that share the shape of the computation (depth, width, batch size,
epochs, features, rows) trains as one: weights are stacked as (runs, in, out), a step is
a handful of batched ops, and each run still follows SPEC 4 exactly: its own initial
weights (those of the reference model of its seed), its own batches (from its own
generator), its own BatchNorm statistics, learning rate, momentum and divergence.

Within a group, runs may differ in activation, BN mode, init, lr, momentum, seed, data
set and normalization: BatchNorm (before or after the activation) and the activations
are computed for the whole group and selected per run with `torch.where`, so that every
op acts on the whole, padded group (see RUN_PAD); a run without BN at a position simply
ignores that position's result.

Every op acts on each run's lanes independently (batched matmul per run, batch norm over
each run's own rows, elementwise ops, reductions over one run's rows), so a run's
arithmetic does not depend on what else is in its group; tests check that bit for bit.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from bnmodels.config import RunConfig
from bnmodels.data import Split
from bnmodels.model import build_model
from bnmodels.run import RunMetrics, RunResult, batch_slices, history_columns

BN_EPS = 1e-5
_BN_KEYS = ("weight", "bias", "running_mean", "running_var")  # per-run BN state
RUN_PAD = 32  # CPU groups are padded to a multiple of this many runs (see train_group)


def group_key(cfg: RunConfig, data: Split) -> tuple:
    """Runs with equal keys share the shape of their computation and train as one group."""
    return (
        cfg.depth,
        cfg.width,
        cfg.batch_size,
        cfg.epochs,
        data.num_class,  # the output width and the loss
        data.x_train.shape[1],
        data.x_train.shape[0],
        data.x_test.shape[0],
    )


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


def _bn_backward(grad_y, st: dict, cache):
    """dL/dy (R, B, w) -> dL/dx (R, B, w); SGD-updates gamma and beta."""
    xhat, inv = cache
    n = grad_y.shape[1]
    grad_gamma = (grad_y * xhat).sum(dim=1, keepdim=True)  # (R, 1, w)
    grad_beta = grad_y.sum(dim=1, keepdim=True)
    # dL/dx = gamma * inv * (dL/dy - mean(dL/dy) - xhat * mean(dL/dy * xhat))
    centered = torch.sub(grad_y, torch.addcmul(grad_beta, xhat, grad_gamma), alpha=1 / n)
    grad_x = centered * (inv * st["weight"])
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


class _Init:
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
    def backward(cache, grad_y):
        return grad_y


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

    def backward(self, cache, grad_y):
        """dL/dy (R, B, w) -> dL/dx (R, B, w); SGD-updates gamma and beta of BN runs."""
        grad_x = _bn_backward(grad_y, self.state, cache)
        return grad_x if self.runs is None else torch.where(self.runs, grad_x, grad_y)


class _Group:
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
        init: _Init,
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

    def _act_forward(self, z):
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
    def _affine(self, h, W, b):  # (R, B, k) @ (R, k, w) + (R, 1, w)
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

    def _linear_backward(self, j: int, h, grad_z, want_grad: bool):
        """Layer j's SGD step from dL/dz (R, B, out) and its input h (R, B, in).

        Returns dL/dh (None for the first layer, which needs none), computed before the
        weights change, and the weight gradient (R, in, out) if asked.
        """
        W = self.weights[j]
        grad_h = self._back(grad_z, W) if j > 0 else None
        grad_W = self._outer(h, grad_z) if want_grad else None
        step = grad_z * self.lr  # the step folded into the gradient, (R, B, out)
        W.sub_(self._outer(h, step))
        self.biases[j].sub_(step.sum(dim=1, keepdim=True))
        return grad_h, grad_W

    def _block_forward(self, j: int, h, training: bool):
        """Hidden layer j: Linear -> [BN pre] -> activation -> [BN post], per run.

        h (R, B, in) -> (out (R, B, w), activation (R, B, w), cache for the backward).
        """
        z = self._affine(h, self.weights[j], self.biases[j])
        z, pre_cache = self.bn["pre"][j].forward(z, training)
        a = self._act_forward(z)
        out, post_cache = self.bn["post"][j].forward(a, training)
        return out, a, (h, a, pre_cache, post_cache)

    def _block_backward(self, j: int, cache, grad_out, want_grad: bool):
        """dL/d(block output) -> dL/d(block input), updating the block's parameters."""
        h, a, pre_cache, post_cache = cache
        grad_a = self.bn["post"][j].backward(post_cache, grad_out)
        grad_z = self.bn["pre"][j].backward(pre_cache, self._act_backward(a, grad_a))
        return self._linear_backward(j, h, grad_z, want_grad)

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
        return self._affine(h, self.weights[-1], self.biases[-1]), acts, caches

    @torch.no_grad()
    def _loss_grad(self, out, yb):
        """dL/d(out) of each run's batch loss: MSE of (R, B, 1) predictions, or the
        cross-entropy of (R, B, C) logits against (R, B) labels (softmax minus one-hot)."""
        n = out.shape[1]
        if not self.num_class:
            return (out - yb) * (2.0 / n)
        onehot = torch.nn.functional.one_hot(yb, self.num_class).to(out.dtype)
        return (torch.softmax(out, dim=2) - onehot) / n

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
            d = out - y
            return {"mse": (d * d).mean(dim=(1, 2))}, acts
        ce = torch.logsumexp(out, dim=2) - out.gather(2, y.unsqueeze(2)).squeeze(2)  # (R, n)
        # argmax picks the lowest index among tied logits (SPEC 4); counts are exact.
        hits = out.argmax(dim=2) == y
        return {"ce": ce.mean(dim=1), "accuracy": hits.to(torch.float64).mean(dim=1)}, acts


def _perms(cfgs: Sequence[RunConfig], n_train: int, epochs: int, device):
    """Each run's per-epoch permutations from its own generator (SPEC 4), drawn once per
    distinct seed on the CPU and expanded on the device. Yields (R, n_train) indices."""
    seeds = sorted({c.seed for c in cfgs})
    col = {s: i for i, s in enumerate(seeds)}
    run_idx = torch.tensor([col[c.seed] for c in cfgs], device=device)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    for _ in range(epochs):
        uniq = torch.stack([torch.randperm(n_train, generator=g) for g in gens])  # (U, n)
        yield uniq.to(device)[run_idx]


class _GraphedStep:
    """A CUDA graph of one full-batch SGD step: one launch instead of ~100 per step.

    Batches are copied into static buffers before each replay. Warm-up steps (needed
    before capture) change the state, so the state is saved before and restored after.
    """

    def __init__(self, group: _Group, xb, yb):
        bn = [st[k] for layers in group.bn_state.values() for st in layers for k in _BN_KEYS]
        state = group.weights + group.biases + bn
        saved = [t.clone() for t in state]
        self.x, self.y = xb.clone(), yb.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                group.sgd_step(self.x, self.y)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            group.sgd_step(self.x, self.y)
        for t, v in zip(state, saved, strict=True):
            t.copy_(v)

    def __call__(self, xb, yb):
        self.x.copy_(xb)
        self.y.copy_(yb)
        self.graph.replay()


def train_group(
    cfgs: Sequence[RunConfig],
    datas: Sequence[Split],
    device="cpu",
    dtype=torch.float32,
    init: _Init | None = None,
    cuda_graphs: bool = True,
    timings: dict | None = None,
    broadcast: bool | None = None,
) -> list[RunResult]:
    """Train runs of one group (equal `group_key`) side by side; results in input order.

    On CUDA, full-batch steps replay a captured graph unless `cuda_graphs` is False.
    `timings`, if given, accumulates seconds spent in "setup", "training", "results".
    `broadcast` picks the small-matrix products (default: broadcast on CUDA, BLAS on CPU).
    """
    clock = _Clock(device, timings)
    cs, ds = list(cfgs), list(datas)
    if torch.device(device).type == "cpu":
        # CPU elementwise kernels compute full SIMD chunks (up to 2 x 16 floats with
        # AVX-512) with vector code and the leftover tail with scalar code, and the two
        # round differently (sigmoid, tanh, fused multiply-adds). Which elements fall in
        # the tail depends on the tensor's total size; padded with copies of the last run
        # to a multiple of RUN_PAD = 32 runs, every tensor's size is a multiple of 32
        # elements and no run ever lands in a scalar tail, whatever its company. The
        # padding runs' results are never built.
        pad = -len(cs) % RUN_PAD
        cs, ds = cs + [cs[-1]] * pad, ds + [ds[-1]] * pad
    group = _Group(cs, ds, torch.device(device), dtype, init or _Init(), broadcast)
    R, c0, dev = group.R, cs[0], group.device
    n_train = ds[0].x_train.shape[0]
    slices = batch_slices(n_train, c0.batch_size)
    full = c0.batch_size
    graphed = None
    x_train = group.x_train[group.data_idx]  # (R, n_train, F)
    y_train = group.y_train[group.data_idx]
    x_test, y_test = group.x_test[group.data_idx], group.y_test[group.data_idx]
    rows = torch.arange(R, device=dev).unsqueeze(1)  # (R, 1)
    # History stays on the device until the end: no synchronization per epoch.
    cols = history_columns(c0.depth, group.num_class)
    hist = {
        c: torch.full((R, c0.epochs), math.nan, dtype=_column_dtype(c, dtype), device=dev)
        for c in cols
    }
    ok = torch.ones(R, c0.epochs, dtype=torch.bool, device=dev)
    last_grads = None
    clock("setup")

    for epoch, perm in enumerate(_perms(cs, n_train, c0.epochs, dev)):
        # Each run's rows in its own epoch order, so that batches are plain slices.
        xp, yp = x_train[rows, perm], y_train[rows, perm]  # (R, n_train, F), (R, n_train, 1)
        for k, (s, e) in enumerate(slices):
            xb, yb = xp[:, s:e], yp[:, s:e]
            if k == len(slices) - 1:  # the epoch's last step: keep its gradients
                last_grads = group.sgd_step(xb, yb, want_grads=True)
            elif dev.type == "cuda" and cuda_graphs and e - s == full:
                graphed = graphed or _GraphedStep(group, xb, yb)
                graphed(xb, yb)
            else:
                group.sgd_step(xb, yb)
        train, test = (x_train, y_train), (x_test, y_test)
        ok[:, epoch] = _record_epoch(group, epoch, hist, last_grads, train, test)

    clock("training")
    # Runs are marked diverged from their first bad epoch on (SPEC 4).
    bad = (~ok).cumsum(dim=1) > 0
    hist = {c: torch.where(bad, math.nan, v).double().cpu() for c, v in hist.items()}
    n = len(cfgs)
    res = _GroupResults(group, n, hist, bad[:, -1].cpu(), last_grads, c0.epochs * len(slices))
    out = [BatchedRunResult(c, res, r) for r, c in enumerate(cfgs)]
    clock("results")
    return out


def _record_epoch(group: _Group, epoch: int, hist: dict, last_grads, train, test):
    """Evaluate every run after an epoch and write its history columns (on the device:
    no synchronization per epoch). Returns which runs are still finite, (R,) bool."""
    train_metrics, acts = group.evaluate(*train)
    test_metrics, _ = group.evaluate(*test)
    # A non-finite loss makes the step's gradients, hence the weights, non-finite;
    # so a run is bad once a parameter or a metric is (SPEC 4: divergence).
    good = torch.ones(group.R, dtype=torch.bool, device=group.device)
    for name in train_metrics:
        good &= torch.isfinite(train_metrics[name]) & torch.isfinite(test_metrics[name])
        hist[f"train_{name}"][:, epoch] = train_metrics[name]
        hist[f"test_{name}"][:, epoch] = test_metrics[name]
    for p in group.weights + group.biases:
        good &= torch.isfinite(p.flatten(1)).all(dim=1)
    for j, (w, grad_w) in enumerate(zip(group.weights, last_grads, strict=True), start=1):
        hist[f"weight_std_l{j}"][:, epoch] = _spread(w)
        hist[f"grad_std_l{j}"][:, epoch] = _spread(grad_w)
    dead = torch.cat([(a <= 0).all(dim=1) for a in acts], dim=1)  # (R, depth * w)
    frac = dead.to(group.dtype).mean(dim=1)
    hist["dead_fraction"][:, epoch] = torch.where(group.relu_runs, frac, math.nan)
    return good


def _column_dtype(column: str, dtype):
    """Accuracies are counts over rows: kept in float64, exactly as the reference has them."""
    return torch.float64 if column.endswith("_accuracy") else dtype


def _spread(t):
    """Per-run std of a stacked (R, in, out) tensor; 0 for a single entry, like the
    reference engine (an unbiased std of one value is NaN)."""
    flat = t.flatten(1)
    return flat.std(dim=1) if flat.shape[1] > 1 else torch.zeros_like(flat[:, 0])


class _Clock:
    """Adds the seconds since its last call to timings[label] (device synchronized)."""

    def __init__(self, device, timings: dict | None):
        self.cuda = torch.device(device).type == "cuda"
        self.timings, self.t = timings, time.perf_counter()

    def __call__(self, label: str):
        if self.timings is None:
            return
        if self.cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.timings[label] = self.timings.get(label, 0.0) + now - self.t
        self.t = now


class _GroupResults:
    """A trained group's results, moved to the CPU once; runs read their slices lazily."""

    def __init__(self, group: _Group, n: int, hist, diverged, last_grads, steps: int):
        self.depth = group.depth
        # (n, out, in) and (n, out): the reference model's layout
        self.W = [t[:n].transpose(1, 2).contiguous().cpu() for t in group.weights]
        self.B = [t[:n, 0].cpu() for t in group.biases]
        self.grads = [t[:n].transpose(1, 2).reshape(n, -1).cpu().numpy() for t in last_grads]
        self.hist = {c: v[:n].numpy() for c, v in hist.items()}
        self.bn = {
            pos: [{k: st[k][:n, 0].cpu() for k in _BN_KEYS} for st in layers]
            for pos, layers in group.bn_state.items()
        }
        self.steps = torch.tensor(steps)
        self.diverged = diverged[:n].tolist()


class BatchedRunResult(RunMetrics):
    """One run of a group: the attributes of `RunResult`, built on first use."""

    def __init__(self, cfg: RunConfig, group: _GroupResults, r: int):
        self.config, self._group, self._r = cfg, group, r
        self.diverged = group.diverged[r]

    @functools.cached_property
    def history(self) -> dict[str, np.ndarray]:
        return {c: v[self._r] for c, v in self._group.hist.items()}

    @functools.cached_property
    def state_dict(self) -> dict[str, torch.Tensor]:
        """In the reference model's layout; clone a tensor before saving it alone (these
        are views of the group's stacked tensors)."""
        res, r, bn = self._group, self._r, self.config.bn
        state = {}
        for j in range(res.depth):
            state[f"blocks.{j}.linear.weight"] = res.W[j][r]
            state[f"blocks.{j}.linear.bias"] = res.B[j][r]
            if bn != "none":
                for name, t in res.bn[bn][j].items():
                    state[f"blocks.{j}.norm.{name}"] = t[r]
                state[f"blocks.{j}.norm.num_batches_tracked"] = res.steps
        state["out.weight"], state["out.bias"] = res.W[-1][r], res.B[-1][r]
        return state

    @functools.cached_property
    def final(self) -> dict[str, list]:
        res, r = self._group, self._r
        layers = res.bn.get(self.config.bn, [])
        return {
            "bn_running_mean": [st["running_mean"][r].tolist() for st in layers],
            "bn_running_var": [st["running_var"][r].tolist() for st in layers],
            "weight_grad": [gr[r].tolist() for gr in res.grads],
        }


def train_runs(
    cfgs: Sequence[RunConfig],
    datas: Sequence[Split],
    device="cpu",
    dtype=torch.float32,
    on_results: Callable[[list[RunResult]], None] | None = None,
) -> list[RunResult]:
    """Train any runs: split them into groups, train each group batched, keep input order.

    `on_results` receives each group's results as soon as the group is trained.
    """
    groups: dict[tuple, list[int]] = {}
    for i, (c, d) in enumerate(zip(cfgs, datas, strict=True)):
        groups.setdefault(group_key(c, d), []).append(i)
    init = _Init()
    out: list[RunResult | None] = [None] * len(cfgs)
    for idx in groups.values():
        res = train_group([cfgs[i] for i in idx], [datas[i] for i in idx], device, dtype, init)
        for i, r in zip(idx, res, strict=True):
            out[i] = r
        if on_results:
            on_results(res)
    return out
