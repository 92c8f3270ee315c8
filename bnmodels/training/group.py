"""One group of runs as stacked tensors: its state, its layers, an SGD step, evaluation.

Runs that share the shape of the computation (depth, width, batch size, features, rows,
classes) are one `Group`: weights stacked as (R, in, out), biases as (R, 1, out), norm
state per position, kind and layer as (R, 1, w). Every layer is a forward that returns
(out, cache) and a backward that takes the cache, side by side (norms: norms.py).

Within a group, runs may differ in activation, norm (kind and placement), init, lr,
momentum, seed, data set and input scaling: each norm in use (before or after the
activation) and each activation are computed for the whole group and selected per run
with `torch.where`; a run without a norm at a position simply ignores that position's
result. Every op acts on each run's lanes independently (batched matmul per run, batch
norm over each run's own rows, layer and group norm over each row's own units,
elementwise ops), so a run's arithmetic does not depend on what else is in its group;
tests check that bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from bnmodels.experiment.config import RunConfig
from bnmodels.experiment.data import Split
from bnmodels.training import block, norms
from bnmodels.training.block import Norm
from bnmodels.training.model import build_model

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

        # Norms per position and hidden layer: a run uses the norm of its own kind at its
        # own position; a position that no run uses is an identity.
        momentum = torch.tensor([c.momentum for c in cfgs], **kw).view(R, 1, 1)
        # self.norms: position -> per layer, a norms.Masked, Chain or Identity;
        # self.norm_state: (position, kind, groups) -> per layer, (R, 1, w) tensors each
        self.norms, self.norm_state = norms.position_layers(
            [Norm.of(c) for c in cfgs], self.depth, self.width, momentum, self.lr, kw, device
        )

        # Activations in use, each with its (R, 1, 1) mask; the last needs no mask.
        acts = [c.activation for c in cfgs]
        used = [a for a in ("sigmoid", "tanh", "relu") if a in acts]
        self.act_masks = [
            (a, torch.tensor([x == a for x in acts], device=device).view(R, 1, 1)) for a in used
        ]
        self.relu_runs = torch.tensor([a == "relu" for a in acts], device=device)  # (R,)

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

    def block_forward(self, j: int, h, training: bool, pre=None, post=None):
        """Hidden layer j (`block.forward`): Linear -> [norm pre] -> activation -> [norm
        post], per run. `pre`, `post`: a wrapper of each position's layer (precise BN).

        h (R, B, in) -> (out (R, B, w), activation (R, B, w), cache for the backward).
        """
        caches = {}

        def norm_at(pos: str, wrap):
            layer = self.norms[pos][j]

            def apply(x):
                y, caches[pos] = layer.forward(x, training)
                return y

            return wrap(layer, apply) if wrap else apply

        linear = functools.partial(self.affine, W=self.weights[j], b=self.biases[j])
        out, a = block.forward(
            h, linear, self.act_forward, norm_at("pre", pre), norm_at("post", post)
        )
        return out, a, (h, a, caches["pre"], caches["post"])

    def _block_backward(self, j: int, cache, grad_out, want_grad: bool):
        """dL/d(block output) -> dL/d(block input), updating the block's parameters: the
        block's layers in reverse."""
        h, a, pre_cache, post_cache = cache
        grad_a = self.norms["post"][j].backward(post_cache, grad_out)
        grad_z = self.norms["pre"][j].backward(pre_cache, self._act_backward(a, grad_a))
        return self._linear_backward(j, h, grad_z, want_grad)

    def _block_gradients(self, j: int, cache, grad_out):
        """`_block_backward` without the update: (dL/d(block input), [(parameter, its
        gradient, runs that use it or None for all)])."""
        h, a, pre_cache, post_cache = cache
        grad_a, post = self.norms["post"][j].backward(post_cache, grad_out, update=False)
        grad_act = self._act_backward(a, grad_a)
        grad_z, pre = self.norms["pre"][j].backward(pre_cache, grad_act, update=False)
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

    def state_tensors(self) -> list[torch.Tensor]:
        """Every parameter and running statistic: what training changes."""
        norm = [
            t for layers in self.norm_state.values() for st in layers for t in norms.tensors(st)
        ]
        return self.weights + self.biases + norm

    @property
    def batch_norm_state(self) -> dict[str, list[dict]]:
        """position -> per layer, the BatchNorm state there (positions with BatchNorm)."""
        return {pos: sts for (pos, kind, _), sts in self.norm_state.items() if kind == "batch"}

    def snapshot(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(tensor, copy) of every parameter and running statistic; `restore` puts the
        copies back, bit for bit."""
        return [(t, t.clone()) for t in self.state_tensors()]

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
            h, a, cache = self.block_forward(j, h, training)
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
