"""Data generation, the train/test split, and input normalization (SPEC 2, 2b, 3)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch

from bnmodels.atomic import atomic_write_bytes
from bnmodels.experiment.config import ClusterSpec, DatasetSpec


@dataclass(frozen=True)
class Split:
    """Features and labels of one data set, split; features float32 unless converted.

    Regression labels are (n, 1) floats; classification labels (num_class > 0) are (n,)
    int64 class indices, which a change of float dtype leaves as they are.
    """

    x_train: torch.Tensor  # (n_train, features)
    y_train: torch.Tensor  # (n_train, 1) or (n_train,) int64
    x_test: torch.Tensor  # (n_test, features)
    y_test: torch.Tensor  # (n_test, 1) or (n_test,) int64
    num_class: int = 0  # 0: regression

    def to(self, dtype=None, device=None) -> Split:
        def move(t):
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return Split(*(move(t) for t in self.tensors()), num_class=self.num_class)

    def tensors(self):
        return (self.x_train, self.y_train, self.x_test, self.y_test)


class NormalizationError(ValueError):
    pass


def generate(spec: DatasetSpec | ClusterSpec, draw: int = 0) -> Split:
    """SPEC 2 (or 2b for a classification set), step by step: one generator, float32.

    Draw d of the data set (0 <= d < spec.draws) is the same recipe from seed + d."""
    if isinstance(spec, ClusterSpec):
        return generate_clusters(spec, draw)
    g = torch.Generator().manual_seed(spec.seed + draw)
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


def generate_clusters(spec: ClusterSpec, draw: int = 0) -> Split:
    """SPEC 2b: one Gaussian cluster of `num_examples` rows per class, centres `mean`
    apart and centred on 0; labels are int64 class indices."""
    g = torch.Generator().manual_seed(spec.seed + draw)
    k = spec.mean * (spec.num_class - 1) / 2
    size = (spec.num_examples, spec.num_inputs)
    xs = [
        torch.normal(i * spec.mean - k, spec.std, size=size, generator=g)
        for i in range(spec.num_class)
    ]
    x = torch.cat(xs)
    y = torch.arange(spec.num_class).repeat_interleave(spec.num_examples)  # int64
    x = x * torch.tensor(spec.feature_scale) + torch.tensor(spec.feature_shift)
    perm = torch.randperm(spec.num_class * spec.num_examples, generator=g)
    tr, te = perm[: spec.n_train], perm[spec.n_train :]
    return Split(x[tr], y[tr], x[te], y[te], num_class=spec.num_class)


def normalize(
    split: Split, method: str, name: str = "data set", columns: tuple[str, ...] = ()
) -> Split:
    """Normalize features per column with train-row statistics only (SPEC 3); `columns`
    names the features in an error (their indices when not given)."""
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
        which = ", ".join(repr(columns[i]) if columns else str(i) for i in zero)
        raise NormalizationError(
            f"{method} normalization of data set {name!r}: feature column(s) "
            f"{which} have zero {what} on the train rows"
        )
    x_train, x_test = (xt - shift) / scale, (split.x_test - shift) / scale
    return Split(x_train, split.y_train, x_test, split.y_test, num_class=split.num_class)


TENSORS = ("x_train", "y_train", "x_test", "y_test")


def _tensors(split: Split) -> dict[str, torch.Tensor]:
    return dict(zip(TENSORS, split.tensors(), strict=True))


def _save(obj, path: str | Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def save_split(split: Split, path: str | Path) -> None:
    """Exact, byte-stable storage (torch's zip format holds raw float32 bytes)."""
    _save({**_tensors(split), "num_class": split.num_class}, path)


def load_split(path: str | Path) -> Split:
    d = torch.load(path, weights_only=True)
    return Split(d["x_train"], d["y_train"], d["x_test"], d["y_test"], d.get("num_class", 0))


def save_draws(splits: list[Split], path: str | Path) -> None:
    """Every draw of a data set in one file; a single draw is stored as `save_split`
    stores it (byte for byte what the file held before draws existed)."""
    if len(splits) == 1:
        save_split(splits[0], path)
        return
    _save({"draws": [_tensors(s) for s in splits], "num_class": splits[0].num_class}, path)


def load_draws(path: str | Path) -> list[Split]:
    """The draws `save_draws` stored, draw 0 first."""
    d = torch.load(path, weights_only=True)
    draws = d.get("draws", [d])
    return [Split(*(t[k] for k in TENSORS), num_class=d.get("num_class", 0)) for t in draws]
