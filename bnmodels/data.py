"""Data generation, the train/test split, and input normalization (SPEC 2, 3)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch

from bnmodels.config import DatasetSpec
from bnmodels.io import atomic_write_bytes


@dataclass(frozen=True)
class Split:
    """Features and labels of one data set, split; float32 unless converted."""

    x_train: torch.Tensor  # (n_train, features)
    y_train: torch.Tensor  # (n_train, 1)
    x_test: torch.Tensor  # (n_test, features)
    y_test: torch.Tensor  # (n_test, 1)

    def to(self, dtype=None, device=None) -> Split:
        return Split(*(t.to(dtype=dtype, device=device) for t in self.tensors()))

    def tensors(self):
        return (self.x_train, self.y_train, self.x_test, self.y_test)


class NormalizationError(ValueError):
    pass


def generate(spec: DatasetSpec) -> Split:
    """SPEC 2, step by step: one generator for everything, float32."""
    g = torch.Generator().manual_seed(spec.seed)
    nf = spec.num_features
    coef = torch.tensor(spec.w[:nf], dtype=torch.float32)
    intercept = spec.w[-1] if spec.bias else 0.0
    x = torch.randn(spec.num_examples, nf, generator=g)
    y = x.pow(spec.deg) @ coef.reshape(-1, 1) + intercept
    y = y + torch.randn(y.shape, generator=g) * spec.delta
    x = x * torch.tensor(spec.feature_scale) + torch.tensor(spec.feature_shift)
    perm = torch.randperm(spec.num_examples, generator=g)
    n_train = spec.n_train
    tr, te = perm[:n_train], perm[n_train:]
    return Split(x[tr], y[tr], x[te], y[te])


def normalize(split: Split, method: str, name: str = "data set") -> Split:
    """Normalize features per column with train-row statistics only (SPEC 3)."""
    if method == "none":
        return split
    xt = split.x_train
    if method == "zscore":
        shift, scale = xt.mean(dim=0), xt.std(dim=0)  # unbiased, like torch.std
        what = "standard deviation"
    elif method == "minmax":
        shift = xt.min(dim=0).values
        scale = xt.max(dim=0).values - shift
        what = "range"
    else:
        raise ValueError(f"unknown normalization {method!r}")
    zero = (scale == 0).nonzero().flatten().tolist()
    if zero:
        raise NormalizationError(
            f"{method} normalization of data set {name!r}: feature column(s) "
            f"{', '.join(map(str, zero))} have zero {what} on the train rows"
        )
    return Split((xt - shift) / scale, split.y_train, (split.x_test - shift) / scale, split.y_test)


def save_split(split: Split, path: str | Path) -> None:
    """Exact, byte-stable storage (torch's zip format holds raw float32 bytes)."""
    buf = io.BytesIO()
    torch.save(
        dict(zip(("x_train", "y_train", "x_test", "y_test"), split.tensors(), strict=True)), buf
    )
    atomic_write_bytes(path, buf.getvalue())


def load_split(path: str | Path) -> Split:
    d = torch.load(path, weights_only=True)
    return Split(d["x_train"], d["y_train"], d["x_test"], d["y_test"])
