"""The batched engine: many runs trained side by side as one computation.

These networks hold a few dozen weights, so one run is pure per-op overhead. Here a
*group* of runs that share the shape of the computation (depth, width, batch size,
epochs, features, rows, classes) trains as one (`bnmodels.training.group.Group`): a step is a
handful of batched ops, and each run still follows SPEC 4 exactly: its own initial
weights (those of the reference model of its seed), its own batches (from its own
generator), its own BatchNorm statistics, learning rate, momentum and divergence. A
run's numbers do not depend on its company, bit for bit (see RUN_PAD and group.py).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from bnmodels.experiment.config import RunConfig
from bnmodels.experiment.data import Split
from bnmodels.training.baseline import baselines
from bnmodels.training.block import Norm
from bnmodels.training.group import Group, Init
from bnmodels.training.landscape import probe_group
from bnmodels.training.norms import BN_KEYS
from bnmodels.training.precise_bn import precise_group_metrics, precise_shared_metrics
from bnmodels.training.result import RunMetrics, RunResult, batch_slices, history_columns
from bnmodels.training.shared_rows import SHARED_ELEMENTS, SharedRows, evaluate_shared

RUN_PAD = 32  # CPU groups are padded to a multiple of this many runs (see train_group)
# From this width on, runs of different norms train in separate groups. A group computes
# every norm its runs use for all of its runs (and selects per run): at width 4 a step is
# per-op overhead and one mixed group is cheapest; from width 16 on the wasted arithmetic
# costs more than the extra groups' ops (docs/performance.md). A run's numbers do not
# depend on its group, so this changes speed only.
SPLIT_NORMS_WIDTH = 16


def group_key(cfg: RunConfig, data: Split) -> tuple:
    """Runs with equal keys share the shape of their computation and train as one group."""
    norm = (cfg.norm, cfg.norm_at, cfg.groups) if cfg.width >= SPLIT_NORMS_WIDTH else ()
    return (
        *norm,
        cfg.depth,
        cfg.width,
        cfg.batch_size,
        cfg.epochs,
        cfg.steps,  # every run of a group stops at the same step
        data.num_class,  # the output width and the loss
        data.x_train.shape[1],
        data.x_train.shape[0],
        data.x_test.shape[0],
    )


def _perms(cfgs: Sequence[RunConfig], n_train: int, epochs: int, device, expand: bool = True):
    """Each run's per-epoch permutations from its own generator (SPEC 4), drawn once per
    distinct seed on the CPU. Yields (R, n_train) indices, or with `expand` False the
    (U, n_train) permutations of the U distinct seeds and each run's row of them (R,)."""
    seeds = sorted({c.seed for c in cfgs})
    col = {s: i for i, s in enumerate(seeds)}
    run_idx = torch.tensor([col[c.seed] for c in cfgs], device=device)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    for _ in range(epochs):
        uniq = torch.stack([torch.randperm(n_train, generator=g) for g in gens])  # (U, n)
        yield uniq.to(device)[run_idx] if expand else (uniq.to(device), run_idx)


class _GraphedStep:
    """A CUDA graph of one full-batch SGD step: one launch instead of ~100 per step.

    Batches are copied into static buffers before each replay. Warm-up steps (needed
    before capture) change the state, so the state is saved before and restored after.
    """

    def __init__(self, group: Group, xb, yb):
        state = group.state_tensors()
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
    init: Init | None = None,
    cuda_graphs: bool = True,
    timings: dict | None = None,
    broadcast: bool | None = None,
    probes: bool = False,
) -> list[RunResult]:
    """Train runs of one group (equal `group_key`) side by side; results in input order.

    `probes`: the loss-landscape probes at each epoch's first batch (landscape.py).
    On CUDA, full-batch steps replay a captured graph unless `cuda_graphs` is False.
    `timings`, if given, accumulates seconds spent in "setup", "training", "results".
    `broadcast` picks the small-matrix products (default: broadcast on CUDA, BLAS on CPU).
    """
    clock = _Clock(device, timings)
    cs, ds = _padded(cfgs, datas, device)
    group = Group(cs, ds, torch.device(device), dtype, init or Init(), broadcast)
    R, c0, dev = group.R, cs[0], group.device
    n_train = ds[0].x_train.shape[0]
    slices = batch_slices(n_train, c0.batch_size)
    total = c0.total_steps(n_train)  # a steps budget may end within the last epoch
    full = c0.batch_size
    graphed = None
    # Large data: every run reads its rows from the data held once (SharedRows), never
    # from a copy of its own; the steps are the same bit for bit, the evaluations sum
    # over chunks of rows. Small data: one copy per run, gathered once per epoch.
    # (decided on the runs padded to RUN_PAD, as before `run_pad`: the same choice for
    # the same runs, so the same evaluation sums)
    padded = len(cs) if dev.type != "cpu" else -(-len(cs) // RUN_PAD) * RUN_PAD
    shared = padded * n_train * ds[0].x_train.shape[1] > SHARED_ELEMENTS
    if shared:
        train = SharedRows(group.x_train, group.y_train, group.data_idx)
        test = SharedRows(group.x_test, group.y_test, group.data_idx)
    else:
        x_train = group.x_train[group.data_idx]  # (R, n_train, F)
        y_train = group.y_train[group.data_idx]
        x_test, y_test = group.x_test[group.data_idx], group.y_test[group.data_idx]
        train, test = (x_train, y_train), (x_test, y_test)
    rows = torch.arange(R, device=dev).unsqueeze(1)  # (R, 1)
    # History stays on the device until the end: no synchronization per epoch.
    cols = history_columns(c0.depth, group.num_class, probes)
    hist = {
        c: torch.full((R, c0.epochs), math.nan, dtype=_column_dtype(c, dtype), device=dev)
        for c in cols
    }
    ok = torch.ones(R, c0.epochs, dtype=torch.bool, device=dev)
    last_grads = None
    clock("setup")

    for epoch, perm in enumerate(_perms(cs, n_train, c0.epochs, dev, expand=not shared)):
        if not shared:
            # Each run's rows in its own epoch order, so that batches are plain slices.
            xp, yp = x_train[rows, perm], y_train[rows, perm]  # (R, n_train, F), (R, n_train, 1)
        done = epoch * len(slices)  # steps before this epoch
        epoch_slices = slices[: total - done]
        for k, (s, e) in enumerate(epoch_slices):
            if shared:
                uniq, run_idx = perm
                xb, yb = train.batch(uniq[:, s:e][run_idx])  # (R, B, F), the same values
            else:
                xb, yb = xp[:, s:e], yp[:, s:e]
            if probes and k == 0:  # before the epoch's first step, on its batch
                for name, v in probe_group(group, xb, yb).items():
                    hist[name][:, epoch] = v
            if k == len(epoch_slices) - 1:  # the epoch's last step: keep its gradients
                last_grads = group.sgd_step(xb, yb, want_grads=True)
            elif dev.type == "cuda" and cuda_graphs and e - s == full:
                graphed = graphed or _GraphedStep(group, xb, yb)
                graphed(xb, yb)
            else:
                group.sgd_step(xb, yb)
        ok[:, epoch] = _record_epoch(group, epoch, hist, last_grads, train, test)
        hist["step"][:, epoch] = done + len(epoch_slices)

    clock("training")
    res = _group_results(group, len(cfgs), hist, ok, last_grads, total, train, test)
    by_data = {id(d): baselines(d) for d in datas}  # once per distinct split
    out = [
        BatchedRunResult(c, res, r, by_data[id(d)])
        for r, (c, d) in enumerate(zip(cfgs, datas, strict=True))
    ]
    clock("results")
    return out


def run_pad(cfgs: Sequence[RunConfig], datas: Sequence[Split], device) -> int:
    """The multiple of runs a group is padded to (`_padded`): RUN_PAD on a CPU, except for
    a group whose tail-sensitive arithmetic all lies in rows of a multiple of 32 units.

    Every rounding-sensitive elementwise op (sigmoid, tanh, fused multiply-adds, the
    norms' scale and shift) works on (R, B, width) or (R, 1, width) tensors of the hidden
    layers. With a width that is a multiple of 32 their sizes are multiples of 32 for any
    R, so no run lands in a scalar tail without padding. What remains per run at other
    sizes is exactly rounded in vector and scalar code alike (the MSE's subtractions and
    products, the steps of the output layer, per-run reductions over their own rows), so
    a regression group of batch or no normalization needs no padding there. The softmax
    of a classification group (exp, log on (R, B, classes)), layer and group
    normalization's per-example statistics and a CPU of more than one thread keep
    RUN_PAD. A lone run is padded to two (a (1, n) tensor's std is reduced whole, in
    another order). tests/test_engine.py trains runs alone, in company and padded.
    """
    if torch.device(device).type != "cpu":
        return 1
    narrow = any(c.width % RUN_PAD for c in cfgs)
    other_norm = any(c.norm not in ("none", "batch") for c in cfgs)
    classes = any(d.num_class for d in datas)
    if narrow or other_norm or classes or torch.get_num_threads() != 1:
        return RUN_PAD
    return 1


def _padded(cfgs: Sequence[RunConfig], datas: Sequence[Split], device):
    """The runs, padded on a CPU with copies of the last one to a multiple of RUN_PAD
    where `run_pad` says so.

    CPU elementwise kernels compute full SIMD chunks (up to 2 x 16 floats with AVX-512)
    with vector code and the leftover tail with scalar code, and the two round differently
    (sigmoid, tanh, fused multiply-adds). Which elements fall in the tail depends on the
    tensor's total size; padded to a multiple of RUN_PAD = 32 runs, every tensor's size is
    a multiple of 32 elements and no run ever lands in a scalar tail, whatever its
    company. The padding runs' results are never built.
    """
    cs, ds = list(cfgs), list(datas)
    pad = -len(cs) % run_pad(cfgs, datas, device)
    if len(cs) + pad == 1 and torch.device(device).type == "cpu":
        pad = 1  # a lone run's (1, n) reductions take torch's whole-tensor path: other sums
    return cs + [cs[-1]] * pad, ds + [ds[-1]] * pad


def _group_results(group: Group, n, hist, ok, last_grads, total, train, test):
    """The first n runs' results, moved to the CPU once; a run is diverged from its first
    bad epoch on (SPEC 4), and has no precise-BN numbers then."""
    bad = (~ok).cumsum(dim=1) > 0
    hist = {c: torch.where(bad, math.nan, v).double().cpu() for c, v in hist.items()}
    if not group.batch_norm_state:
        precise = {}
    elif isinstance(train, SharedRows):
        precise = precise_shared_metrics(group, train, test)
    else:
        precise = precise_group_metrics(group, train[0], *test)
    precise = {k: torch.where(bad[:, -1], math.nan, v).double().cpu() for k, v in precise.items()}
    return _GroupResults(group, n, hist, bad[:, -1].cpu(), last_grads, total, precise)


def _record_epoch(group: Group, epoch: int, hist: dict, last_grads, train, test):
    """Evaluate every run after an epoch and write its history columns (on the device:
    no synchronization per epoch). Returns which runs are still finite, (R,) bool."""
    train_metrics, dead = _evaluate(group, train)
    test_metrics, _ = _evaluate(group, test)
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
        norm = w.flatten(1).norm(dim=1)  # (R,)
        hist[f"weight_norm_l{j}"][:, epoch] = norm
        hist[f"grad_ratio_l{j}"][:, epoch] = grad_w.flatten(1).norm(dim=1) / norm
    frac = dead.to(group.dtype).mean(dim=1)
    hist["dead_fraction"][:, epoch] = torch.where(group.relu_runs, frac, math.nan)
    return good


def _evaluate(group: Group, data) -> tuple[dict, torch.Tensor]:
    """Eval-mode metrics of every run on (x, y) or SharedRows, and which hidden units are
    dead on every row, (R, depth * w) bool."""
    if isinstance(data, SharedRows):
        return evaluate_shared(group, data)
    metrics, acts = group.evaluate(*data)
    return metrics, torch.cat([(a <= 0).all(dim=1) for a in acts], dim=1)


def _column_dtype(column: str, dtype):
    """Accuracies and step counts are counts: kept in float64, exactly as the reference
    has them."""
    return torch.float64 if column.endswith("_accuracy") or column == "step" else dtype


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

    def __init__(self, group: Group, n: int, hist, diverged, last_grads, steps, precise):
        self.depth = group.depth
        self.precise = {k: v[:n].tolist() for k, v in precise.items()}
        # (n, out, in) and (n, out): the reference model's layout
        self.W = [t[:n].transpose(1, 2).contiguous().cpu() for t in group.weights]
        self.B = [t[:n, 0].cpu() for t in group.biases]
        self.grads = [t[:n].transpose(1, 2).reshape(n, -1).cpu().numpy() for t in last_grads]
        self.hist = {c: v[:n].numpy() for c, v in hist.items()}
        # (position, kind, groups) -> per layer, {state key: (n, w)}
        self.norm = {
            key: [{k: st[k][:n, 0].cpu() for k in BN_KEYS if k in st} for st in layers]
            for key, layers in group.norm_state.items()
        }
        self.steps = torch.tensor(steps)
        self.diverged = diverged[:n].tolist()


class BatchedRunResult(RunMetrics):
    """One run of a group: the attributes of `RunResult`, built on first use."""

    def __init__(self, cfg: RunConfig, group: _GroupResults, r: int, baseline: dict):
        self.config, self._group, self._r = cfg, group, r
        self.diverged = group.diverged[r]
        self.baseline = baseline  # the constant predictor on the run's data (baseline.py)

    @functools.cached_property
    def precise_bn(self) -> dict[str, float]:
        if not Norm.of(self.config).batch_statistics:
            return {}
        return {k: v[self._r] for k, v in self._group.precise.items()}

    @functools.cached_property
    def history(self) -> dict[str, np.ndarray]:
        return {c: v[self._r] for c, v in self._group.hist.items()}

    @functools.cached_property
    def state_dict(self) -> dict[str, torch.Tensor]:
        """In the reference model's layout; clone a tensor before saving it alone (these
        are views of the group's stacked tensors)."""
        res, r, cfg = self._group, self._r, self.config
        norm = res.norm.get((cfg.norm_at, cfg.norm, cfg.groups))
        state = {}
        for j in range(res.depth):
            state[f"blocks.{j}.linear.weight"] = res.W[j][r]
            state[f"blocks.{j}.linear.bias"] = res.B[j][r]
            if norm is not None:
                for name, t in norm[j].items():
                    state[f"blocks.{j}.norm.{name}"] = t[r]
                if cfg.norm == "batch":
                    state[f"blocks.{j}.norm.num_batches_tracked"] = res.steps
        state["out.weight"], state["out.bias"] = res.W[-1][r], res.B[-1][r]
        return state

    @functools.cached_property
    def final(self) -> dict[str, list]:
        res, r = self._group, self._r
        layers = res.norm.get((self.config.bn, "batch", 0), [])
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
    probes: bool = False,
) -> list[RunResult]:
    """Train any runs: split them into groups, train each group batched, keep input order.

    `on_results` receives each group's results as soon as the group is trained; `probes`
    adds the loss-landscape probes to every run's history.
    """
    groups: dict[tuple, list[int]] = {}
    for i, (c, d) in enumerate(zip(cfgs, datas, strict=True)):
        groups.setdefault(group_key(c, d), []).append(i)
    init = Init()
    out: list[RunResult | None] = [None] * len(cfgs)
    for idx in groups.values():
        res = train_group(
            [cfgs[i] for i in idx], [datas[i] for i in idx], device, dtype, init, probes=probes
        )
        for i, r in zip(idx, res, strict=True):
            out[i] = r
        if on_results:
            on_results(res)
    return out
