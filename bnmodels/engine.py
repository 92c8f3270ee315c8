"""The batched engine: many runs trained side by side as one computation.

These networks hold a few dozen weights, so one run is pure per-op overhead. Here a
*group* of runs that share the shape of the computation (depth, width, batch size,
epochs, features, rows) trains as one: weights are stacked as (runs, in, out), a step is
a handful of batched ops, and each run still follows SPEC 4 exactly: its own initial
weights (those of the reference model of its seed), its own batches (from its own
generator), its own BatchNorm statistics, learning rate, momentum and divergence.

Within a group, runs may differ in activation, BN mode, init, lr, momentum, seed, data
set and normalization. Runs are sorted by BN mode so that each mode's BatchNorm acts on
one contiguous slice of runs; activations are mixed with `torch.where`.

Every op acts on each run's lanes independently (batched matmul per run, batch norm over
each run's own rows, elementwise ops, reductions over one run's rows), so a run's
arithmetic does not depend on what else is in its group; tests check that bit for bit.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bnmodels.config import RunConfig
from bnmodels.data import Split
from bnmodels.model import build_model
from bnmodels.train import RunResult, batch_slices, history_columns

BN_EPS = 1e-5
# CPU elementwise kernels compute full SIMD chunks (up to 2 x 16 floats with AVX-512) with
# vector code and the leftover tail with scalar code, and the two round differently
# (sigmoid, tanh, fused multiply-adds). Which elements fall in the tail depends on the
# tensor's total size, so on CPU groups are padded with copies of their last run to a
# multiple of RUN_PAD: then every tensor's size is a multiple of 32 elements and no run
# ever lands in a scalar tail, whatever its company.
RUN_PAD = 32


def group_key(cfg: RunConfig, data: Split) -> tuple:
    """Runs with equal keys share the shape of their computation and train as one group."""
    return (cfg.depth, cfg.width, cfg.batch_size, cfg.epochs, data.x_train.shape[1],
            data.x_train.shape[0], data.x_test.shape[0])  # fmt: skip


@dataclass(frozen=True)
class _Segment:
    start: int
    stop: int
    pos: str  # "pre" | "post"


def _batch_norm(x, st: dict, training: bool):
    """BatchNorm1d over each run's own batch: x (S, B, w), state tensors (S, 1, w).

    Written out rather than `F.batch_norm` over (B, S*w) channels: that kernel's backward
    reduces differently depending on the channel count, so a run's gradients would depend
    on how many runs share its segment. Means and sums over dim 1 reduce one run's rows
    in the same order whatever S is.
    """
    if not training:
        return (x - st["running_mean"]) / torch.sqrt(st["running_var"] + BN_EPS) * st[
            "weight"
        ] + st["bias"]
    mean = x.mean(dim=1, keepdim=True)  # (S, 1, w)
    xc = x - mean
    var = (xc * xc).mean(dim=1, keepdim=True)  # biased, as BatchNorm normalizes with
    y = xc / torch.sqrt(var + BN_EPS) * st["weight"] + st["bias"]
    with torch.no_grad():  # running statistics use the unbiased variance, like PyTorch
        n, m = x.shape[1], st["momentum"]
        st["running_mean"].copy_(m * mean + (1 - m) * st["running_mean"])
        st["running_var"].copy_(m * var * (n / (n - 1)) + (1 - m) * st["running_var"])
    return y


class _Init:
    """Initial weights of reference models, cached: they depend only on (seed, features,
    depth, width, init), not on activation, BN mode, lr or momentum."""

    def __init__(self):
        self.cache: dict[tuple, list[torch.Tensor]] = {}

    def __call__(self, cfg: RunConfig, features: int) -> list[torch.Tensor]:
        key = (cfg.seed, features, cfg.depth, cfg.width, cfg.init)
        if key not in self.cache:
            model = build_model(cfg, features)
            self.cache[key] = [
                t.detach() for lin in model.linears() for t in (lin.weight.T, lin.bias)
            ]
        return self.cache[key]


class _Group:
    """One group's stacked state and its forward pass."""

    def __init__(self, cfgs: Sequence[RunConfig], datas: Sequence[Split], device, dtype,
                 init: _Init):  # fmt: skip
        self.cfgs = list(cfgs)
        c0, R = cfgs[0], len(cfgs)
        self.R, self.depth, self.width = R, c0.depth, c0.width
        self.device, self.dtype = device, dtype
        kw = dict(device=device, dtype=dtype)

        # Data: unique splits stacked once, each run points at its own.  (D, n, F)
        uniq: dict[int, int] = {}
        for d in datas:
            uniq.setdefault(id(d), len(uniq))
        by_id = {id(d): d for d in datas}
        order = sorted(uniq, key=uniq.get)
        self.x_train = torch.stack([by_id[i].x_train for i in order]).to(**kw)
        self.y_train = torch.stack([by_id[i].y_train for i in order]).to(**kw)
        self.x_test = torch.stack([by_id[i].x_test for i in order]).to(**kw)
        self.y_test = torch.stack([by_id[i].y_test for i in order]).to(**kw)
        self.data_idx = torch.tensor([uniq[id(d)] for d in datas], device=device)  # (R,)

        # Weights: (R, in, out) and biases (R, 1, out), leaves of autograd.
        feats = datas[0].x_train.shape[1]
        per_run = [init(c, feats) for c in cfgs]
        self.weights, self.biases = [], []
        for j in range(self.depth + 1):
            self.weights.append(torch.stack([p[2 * j] for p in per_run]).to(**kw))
            self.biases.append(torch.stack([p[2 * j + 1] for p in per_run]).unsqueeze(1).to(**kw))
        lr = torch.tensor([c.lr for c in cfgs], **kw)
        self.lr_w = lr.view(R, 1, 1)

        # BatchNorm segments: runs are pre-sorted by bn mode, so each mode is one slice.
        self.segments = []
        for bn, idx in itertools.groupby(range(R), key=lambda i: cfgs[i].bn):
            idx = list(idx)
            if bn != "none":
                self.segments.append(_Segment(idx[0], idx[-1] + 1, bn))
        w = self.width
        mom = torch.tensor([c.momentum for c in cfgs], **kw).view(R, 1, 1)
        # Per hidden layer, per segment: gamma, beta, running mean/var, each (S, 1, w).
        self.bn_state = [
            [
                {
                    "weight": torch.ones(s.stop - s.start, 1, w, **kw),
                    "bias": torch.zeros(s.stop - s.start, 1, w, **kw),
                    "running_mean": torch.zeros(s.stop - s.start, 1, w, **kw),
                    "running_var": torch.ones(s.stop - s.start, 1, w, **kw),
                    "momentum": mom[s.start : s.stop],
                    "lr": self.lr_w[s.start : s.stop],
                }
                for s in self.segments
            ]
            for _ in range(self.depth)
        ]
        acts = [c.activation for c in cfgs]
        self.single_act = acts[0] if len(set(acts)) == 1 else None
        self.act_masks = {
            a: torch.tensor([x == a for x in acts], device=device).view(R, 1, 1)
            for a in ("sigmoid", "tanh")
        }
        self.relu_runs = torch.tensor([a == "relu" for a in acts], device=device)

    # -- parameters -------------------------------------------------------------------
    def params(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(parameter, its per-element learning rate, broadcastable)."""
        out = [(p, self.lr_w) for p in self.weights + self.biases]
        for layer in self.bn_state:
            for st in layer:
                out += [(st["weight"], st["lr"]), (st["bias"], st["lr"])]
        return out

    def requires_grad_(self, flag=True):
        for p, _ in self.params():
            p.requires_grad_(flag)

    # -- forward ----------------------------------------------------------------------
    def _act(self, z):
        if self.single_act is not None:
            return {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[
                self.single_act
            ](z)
        return torch.where(
            self.act_masks["sigmoid"],
            torch.sigmoid(z),
            torch.where(self.act_masks["tanh"], torch.tanh(z), torch.relu(z)),
        )

    def _bn(self, z, layer: int, pos: str, training: bool):
        """Apply each `pos` segment's BatchNorm to its runs' lanes of z (R, B, w)."""
        pieces, cursor = [], 0
        for seg, st in zip(self.segments, self.bn_state[layer], strict=True):
            if seg.pos != pos:
                continue
            if seg.start > cursor:
                pieces.append(z[cursor : seg.start])
            x = z[seg.start : seg.stop]  # (S, B, w)
            pieces.append(_batch_norm(x, st, training))
            cursor = seg.stop
        if not pieces:
            return z
        if cursor < self.R:
            pieces.append(z[cursor:])
        return torch.cat(pieces) if len(pieces) > 1 else pieces[0]

    def forward(self, h, training: bool):
        """h (R, B, F) -> predictions (R, B, 1) and each hidden activation (R, B, w)."""
        acts = []
        for j in range(self.depth):
            z = torch.baddbmm(self.biases[j], h, self.weights[j])  # (R, B, w)
            z = self._bn(z, j, "pre", training)
            a = self._act(z)
            acts.append(a)
            h = self._bn(a, j, "post", training)
        return torch.baddbmm(self.biases[-1], h, self.weights[-1]), acts

    @torch.no_grad()
    def evaluate(self, x, y):
        """Eval-mode MSE per run (R,) and hidden activations."""
        pred, acts = self.forward(x, training=False)
        return F.mse_loss(pred, y, reduction="none").mean(dim=(1, 2)), acts


def _perms(cfgs: Sequence[RunConfig], n_train: int, epochs: int):
    """Each run's per-epoch permutations from its own generator (SPEC 4), shared by
    runs of equal seed. Yields (R, n_train) index tensors, one per epoch."""
    seeds = sorted({c.seed for c in cfgs})
    col = {s: i for i, s in enumerate(seeds)}
    run_idx = torch.tensor([col[c.seed] for c in cfgs])
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    for _ in range(epochs):
        uniq = torch.stack([torch.randperm(n_train, generator=g) for g in gens])  # (U, n)
        yield uniq[run_idx]


def train_group(cfgs: Sequence[RunConfig], datas: Sequence[Split], device="cpu",
                dtype=torch.float32, init: _Init | None = None,
                on_epoch: Callable[[int], None] | None = None) -> list[RunResult]:  # fmt: skip
    """Train runs of one group (equal `group_key`) side by side; results in input order."""
    order = sorted(range(len(cfgs)), key=lambda i: cfgs[i].bn)
    cs = [cfgs[i] for i in order]
    ds = [datas[i] for i in order]
    if torch.device(device).type == "cpu":
        pad = -len(cs) % RUN_PAD
        cs, ds = cs + [cs[-1]] * pad, ds + [ds[-1]] * pad
    g = _Group(cs, ds, torch.device(device), dtype, init or _Init())
    R, c0 = g.R, cs[0]
    n_train = ds[0].x_train.shape[0]
    slices = batch_slices(n_train, c0.batch_size)
    cols = history_columns(c0.depth)
    hist = {c: torch.full((R, c0.epochs), math.nan, dtype=torch.float64) for c in cols}
    dev = g.device
    bad = torch.zeros(R, dtype=torch.bool, device=dev)  # non-finite loss seen so far
    first_bad = torch.full((R,), c0.epochs, dtype=torch.long)  # first epoch not recorded
    x_train = g.x_train[g.data_idx]  # (R, n_train, F)
    y_train = g.y_train[g.data_idx]
    x_test, y_test = g.x_test[g.data_idx], g.y_test[g.data_idx]
    rows = torch.arange(R, device=dev).unsqueeze(1)  # (R, 1)
    g.requires_grad_(True)
    grad_std = [torch.zeros(R, dtype=dtype, device=dev) for _ in g.weights]
    last_grads = [torch.zeros_like(w) for w in g.weights]

    for epoch, perm in enumerate(_perms(cs, n_train, c0.epochs)):
        perm = perm.to(dev)
        for k, (s, e) in enumerate(slices):
            idx = perm[:, s:e]  # (R, B)
            xb, yb = x_train[rows, idx], y_train[rows, idx]  # (R, B, F), (R, B, 1)
            pred, _ = g.forward(xb, training=True)
            loss = F.mse_loss(pred, yb, reduction="none").mean(dim=(1, 2))  # (R,)
            bad |= ~torch.isfinite(loss)
            loss.sum().backward()  # each run's grads are those of its own loss
            with torch.no_grad():
                if k == len(slices) - 1:
                    for j, w in enumerate(g.weights):
                        grad_std[j] = w.grad.flatten(1).std(dim=1)
                        last_grads[j] = w.grad.detach().clone()
                for p, lr in g.params():
                    p.sub_(p.grad * lr)
                    p.grad = None
        train_mse, acts = g.evaluate(x_train, y_train)
        test_mse, _ = g.evaluate(x_test, y_test)
        with torch.no_grad():
            ok = ~bad & torch.isfinite(train_mse) & torch.isfinite(test_mse)
            bad |= ~ok
            hist["train_mse"][:, epoch] = train_mse.double().cpu()
            hist["test_mse"][:, epoch] = test_mse.double().cpu()
            for j, w in enumerate(g.weights, start=1):
                hist[f"weight_std_l{j}"][:, epoch] = w.flatten(1).std(dim=1).double().cpu()
                hist[f"grad_std_l{j}"][:, epoch] = grad_std[j - 1].double().cpu()
            dead = torch.cat([(a <= 0).all(dim=1) for a in acts], dim=1)  # (R, depth*w)
            frac = dead.double().mean(dim=1)
            hist["dead_fraction"][:, epoch] = torch.where(
                g.relu_runs, frac, torch.full_like(frac, math.nan)
            ).cpu()
            newly = (~ok).cpu() & (first_bad == c0.epochs)
            first_bad[newly] = epoch
        if on_epoch:
            on_epoch(epoch)
    g.requires_grad_(False)
    # Runs are marked diverged from their first bad epoch on (SPEC 4).
    ep = torch.arange(c0.epochs).unsqueeze(0)
    mask = ep >= first_bad.unsqueeze(1)
    for c in cols:
        hist[c][mask] = math.nan
    n = len(order)  # results of the padding runs are never built
    results = _unstack(g, cs[:n], hist, first_bad < c0.epochs, last_grads, n_steps=len(slices))
    out = [None] * len(cfgs)
    for pos, i in enumerate(order):  # padding runs, at the end, are dropped
        out[i] = results[pos]
    return out


def _unstack(g: _Group, cs, hist, diverged, last_grads, n_steps) -> list[RunResult]:
    """Per-run results with state dicts in the reference model's layout."""
    W = [t.detach().cpu() for t in g.weights]
    Bs = [t.detach().cpu() for t in g.biases]
    LG = [t.cpu() for t in last_grads]
    hist_np = {c: v.numpy() for c, v in hist.items()}
    bn_of_run = {}
    for si, seg in enumerate(g.segments):
        for r in range(seg.start, seg.stop):
            bn_of_run[r] = (si, r - seg.start)
    bn_cpu = [[{k: v.detach().cpu() for k, v in st.items()} for st in layer]
              for layer in g.bn_state]  # fmt: skip
    steps = cs[0].epochs * n_steps
    results = []
    for r, cfg in enumerate(cs):
        state = {}
        rm, rv = [], []
        for j in range(g.depth):
            state[f"blocks.{j}.linear.weight"] = W[j][r].T.contiguous()
            state[f"blocks.{j}.linear.bias"] = Bs[j][r, 0].clone()
            if r in bn_of_run:
                si, q = bn_of_run[r]
                st = bn_cpu[j][si]
                for name in ("weight", "bias", "running_mean", "running_var"):
                    state[f"blocks.{j}.norm.{name}"] = st[name][q, 0].clone()
                state[f"blocks.{j}.norm.num_batches_tracked"] = torch.tensor(steps)
                rm.append(state[f"blocks.{j}.norm.running_mean"].tolist())
                rv.append(state[f"blocks.{j}.norm.running_var"].tolist())
        state["out.weight"] = W[-1][r].T.contiguous()
        state["out.bias"] = Bs[-1][r, 0].clone()
        final = {
            "bn_running_mean": rm,
            "bn_running_var": rv,
            "weight_grad": [lg[r].T.flatten().tolist() for lg in LG],
        }
        h = {c: np.ascontiguousarray(v[r]) for c, v in hist_np.items()}
        results.append(RunResult(cfg, h, bool(diverged[r]), state, final))
    return results


def train_runs(cfgs: Sequence[RunConfig], datas: Sequence[Split], device="cpu",
               dtype=torch.float32, on_group: Callable[[int], None] | None = None
               ) -> list[RunResult]:  # fmt: skip
    """Train any runs: split them into groups, train each group batched, keep input order."""
    groups: dict[tuple, list[int]] = {}
    for i, (c, d) in enumerate(zip(cfgs, datas, strict=True)):
        groups.setdefault(group_key(c, d), []).append(i)
    init = _Init()
    out: list[RunResult | None] = [None] * len(cfgs)
    for idx in groups.values():
        res = train_group([cfgs[i] for i in idx], [datas[i] for i in idx], device, dtype, init)
        for i, r in zip(idx, res, strict=True):
            out[i] = r
        if on_group:
            on_group(len(idx))
    return out
