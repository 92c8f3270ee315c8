"""The typed, frozen records of an experiment: data sets, runs, sweeps, execution (SPEC 1).

Built once, by `bnmodels.experiment.params` from params.yaml; everything downstream trusts them.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

NORMALIZATIONS = ("none", "zscore", "minmax")
ACTIVATIONS = ("sigmoid", "relu", "tanh")
BN_MODES = ("none", "pre", "post")  # `bn`: the shorthand for norm: batch at a placement
# A hidden block's normalization (extension): its kind, its placement (before or after
# the activation), and for group normalization its number of groups. What each kind
# computes is bnmodels.training.block's.
NORMS = ("none", "batch", "layer", "group", "rms")
NORM_PLACES = ("pre", "post")
# The normalization spelled out, after CONFIG_KEYS in runs.csv and in every run's
# configuration: implied by `bn` for the runs that CONFIG_KEYS describe (`bn` alone
# varies in a sweep of BatchNorm placements), so not among them.
NORM_KEYS = ("norm", "norm_at", "groups")
INITS = ("default", "xavier", "kaiming")
ENGINES = ("batched", "reference")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "float64")
CLUSTERS = ("local", "ray")
TASKS = ("regression", "classification")  # of a data set read from a file
FILE_SUFFIXES = (".csv", ".parquet")

# Column order of runs.csv and of every configuration dump (SPEC 5); the keys that tell
# configurations apart (the claims' axes), none implied by another.
CONFIG_KEYS = (
    "dataset",
    "normalization",
    "activation",
    "bn",
    "depth",
    "width",
    "init",
    "momentum",
    "batch_size",
    "lr",
    "epochs",
    "seed",
)
# The keys that describe a run to a person (a sweep's parent params in MLflow and the
# UI view's groups): CONFIG_KEYS with the normalization spelled out instead of `bn`.
DESCRIBE_KEYS = tuple(k for c in CONFIG_KEYS for k in (NORM_KEYS if c == "bn" else (c,)))
# The training budget: a run trains whole `epochs`, or exactly `steps` SGD steps.
BUDGET_KEYS = ("epochs", "steps")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # also a file and DVC key name


@dataclass(frozen=True)
class DatasetSpec:
    """One generated data set (SPEC 2)."""

    name: str
    num_examples: int
    w: tuple[float, ...]
    bias: bool
    delta: float
    deg: int
    seed: int
    train_fraction: float
    feature_scale: tuple[float, ...]  # one per feature
    feature_shift: tuple[float, ...]
    draws: int = 1  # draws of the data set, draw d from seed + d (extension; SPEC 2)

    @property
    def num_features(self) -> int:
        return len(self.w) - 1 if self.bias else len(self.w)

    @property
    def n_train(self) -> int:
        return int(self.num_examples * self.train_fraction)

    @property
    def num_class(self) -> int:
        """0: a regression data set (one output, MSE)."""
        return 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("name")
        if d["draws"] == 1:  # the default: as the entry was before draws existed
            d.pop("draws")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class ClusterSpec:
    """One generated classification data set: a Gaussian cluster per class (SPEC 2b)."""

    name: str
    num_class: int
    num_examples: int  # per class
    num_inputs: int
    mean: float  # distance between neighbouring class centres
    std: float
    seed: int
    train_fraction: float
    feature_scale: tuple[float, ...]  # one per feature
    feature_shift: tuple[float, ...]
    draws: int = 1  # draws of the data set, draw d from seed + d (extension; SPEC 2)

    @property
    def num_features(self) -> int:
        return self.num_inputs

    @property
    def n_train(self) -> int:
        return int(self.num_class * self.num_examples * self.train_fraction)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("name")
        if d["draws"] == 1:  # the default: as the entry was before draws existed
            d.pop("draws")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class FileSpec:
    """A data set read from a CSV or Parquet file (extension: `file_datasets`, SPEC 2c).

    `path` is `file` resolved against the params file's folder; `rows` is the file's data
    rows, counted when params are validated (the split sizes follow from it)."""

    name: str
    file: str  # as written in params.yaml (and tracked by DVC)
    path: str
    target: str
    task: str  # regression | classification
    seed: int
    train_fraction: float
    rows: int
    features: tuple[str, ...] | None = None  # None: every column but the target
    draws: int = 1  # independent train/test splits, draw d from seed + d

    @property
    def n_train(self) -> int:
        # A stratified split keeps exactly this many (bnmodels.experiment.files)
        return int(self.rows * self.train_fraction)

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("file", "target", "task", "seed", "train_fraction")}
        if self.features is not None:
            d["features"] = list(self.features)
        return {**d, "draws": self.draws}


DataSpec = DatasetSpec | ClusterSpec | FileSpec


@dataclass(frozen=True)
class RunConfig:
    """The complete configuration of one training run; equal configs are the same run."""

    dataset: str
    normalization: str
    activation: str
    bn: str
    depth: int
    width: int
    init: str
    momentum: float
    batch_size: int
    lr: float
    epochs: int  # with a steps budget: ceil(steps / batches per epoch), set by params.py
    seed: int
    # A steps budget (extension): exactly this many SGD steps, the last epoch possibly
    # partial; None: the epochs budget, every epoch whole.
    steps: int | None = None
    # Which draw of its data set the run trains on (`run_draw`), set by params.py; None
    # when the data set has a single draw.
    draw: int | None = None
    # The normalization (extension): `norm` is its kind, `norm_at` its placement and
    # `groups` group normalization's groups. None: taken from `bn`, the shorthand (bn: pre
    # is norm: batch, norm_at: pre). Canonical after construction (`__post_init__`):
    # norm_at is "none" without a normalization, groups is 0 except for norm: group, and
    # bn is the BatchNorm placement ("none" for any other kind).
    norm: str | None = None
    norm_at: str | None = None
    groups: int | None = None

    def __post_init__(self):
        norm, at, groups = canonical_norm(self.bn, self.norm, self.norm_at, self.groups)
        bn = at if norm == "batch" else "none"
        if self.norm is not None and self.bn != bn:
            raise ValueError(
                f"bn: {self.bn} contradicts norm: {norm}, norm_at: {at}; give norm=None "
                "to set the normalization by bn (dataclasses.replace(cfg, bn=..., norm=None))"
            )
        for k, v in (("norm", norm), ("norm_at", at), ("groups", groups), ("bn", bn)):
            object.__setattr__(self, k, v)

    @property
    def run_key(self) -> str:
        """Unique, stable and readable: every key, floats in shortest round-trip form
        (a steps budget replaces the epochs it implies)."""
        budget = f"e{self.epochs}" if self.steps is None else f"steps{self.steps}"
        draw = "" if self.draw is None else f"-draw{self.draw}"
        # BatchNorm or none: the key runs had before other norms existed
        norm = f"bn_{self.bn}" if self.norm in ("none", "batch") else self._norm_key
        return (
            f"{self.dataset}-{self.normalization}-{self.activation}-{norm}"
            f"-d{self.depth}-w{self.width}-{self.init}-m{self.momentum!r}"
            f"-b{self.batch_size}-lr{self.lr!r}-{budget}-s{self.seed}{draw}"
        )

    @property
    def _norm_key(self) -> str:
        groups = str(self.groups) if self.norm == "group" else ""
        return f"norm_{self.norm}{groups}_{self.norm_at}"

    def as_dict(self) -> dict[str, Any]:
        """Every configuration key, then `norm` and `norm_at` (and `groups` for group
        normalization); `steps` only with a steps budget and `draw` only on a data set of
        several draws (so that the plans and logged params of other runs are as they
        were)."""
        d = {k: getattr(self, k) for k in CONFIG_KEYS}
        norm = {"norm": self.norm, "norm_at": self.norm_at}
        if self.norm == "group":
            norm["groups"] = self.groups
        extra = {k: getattr(self, k) for k in ("steps", "draw") if getattr(self, k) is not None}
        return {**d, **norm, **extra}

    @property
    def data_key(self) -> tuple[str, str, int]:
        """(data set, normalization, draw): the split this run trains on."""
        return (self.dataset, self.normalization, self.draw or 0)

    def total_steps(self, n_train: int) -> int:
        """The SGD steps this run makes on `n_train` train rows."""
        if self.steps is not None:
            return self.steps
        return self.epochs * batches_per_epoch(n_train, self.batch_size)


def canonical_norm(
    bn: str, norm: str | None, norm_at: str | None, groups: int | None
) -> tuple[str, str, int]:
    """(norm, norm_at, groups) of a run given `bn` (the shorthand) or `norm`: norm_at is
    "none" without a normalization and "pre" when not given; groups 0 unless norm: group."""
    if norm is None:
        norm, norm_at = ("none", "none") if bn == "none" else ("batch", bn)
    if norm == "none":
        return "none", "none", 0
    at = norm_at if norm_at in NORM_PLACES else "pre"
    return norm, at, (groups or 0) if norm == "group" else 0


def batches_per_epoch(n_train: int, batch_size: int) -> int:
    """SGD steps in one whole epoch: a last batch of one row is skipped (SPEC 4)."""
    return n_train // batch_size + (n_train % batch_size >= 2)


def epochs_for_steps(steps: int, n_train: int, batch_size: int) -> int:
    """The epochs a steps budget spans: the last one possibly partial."""
    return math.ceil(steps / batches_per_epoch(n_train, batch_size))


@dataclass(frozen=True)
class Sweep:
    name: str
    axes: dict[str, tuple]  # keys given as lists, in file order
    runs: tuple[RunConfig, ...]
    probes: bool = False  # loss-landscape probes every epoch (SPEC 4): what it records


@dataclass(frozen=True)
class Execution:
    """How runs are computed, never what they are (SPEC 1): not part of any run's identity."""

    engine: str = "batched"
    device: str = "auto"
    threads: int = 1
    dtype: str = "float32"
    max_runs: int = 200_000  # per sweep; a guard against a typo that explodes a product
    # MLflow logging processes: auto = 1 for SQLite (one writer), else the cores left
    # after training; a store failing mid-sweep is retried for log_retry_s seconds.
    log_workers: str | int = "auto"
    log_retry_s: float = 60.0
    # Training processes (`bnmodels.training.parallel`): auto = the cores available minus
    # what logging needs; `threads` is per worker. `cluster: ray` sends the shards to an
    # existing Ray cluster at `address` (else RAY_ADDRESS) instead.
    workers: str | int = "auto"
    cluster: str = "local"
    address: str = ""


@dataclass(frozen=True)
class Params:
    datasets: dict[str, DataSpec]
    defaults: RunConfig
    sweeps: dict[str, Sweep]
    execution: Execution = field(default_factory=Execution)


def used_data(sweep: Sweep) -> list[tuple[str, str, int]]:
    """The (dataset, normalization, draw) splits a sweep's runs train on, sorted."""
    return sorted({r.data_key for r in sweep.runs})


def run_draw(seed: int, draws: int) -> int | None:
    """The draw of a data set that a run of this seed trains on: seed mod draws, so that
    runs of one seed share their data whatever their sweep (claims pair runs by seed) and
    consecutive seeds go through every draw; None for a data set of one draw."""
    return None if draws == 1 else seed % draws
