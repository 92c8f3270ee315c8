"""params.yaml: loading, complete validation, and expansion of sweeps into runs (SPEC 1, 6).

Everything downstream trusts the frozen dataclasses built here; nothing else reads YAML.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

NORMALIZATIONS = ("none", "zscore", "minmax")
ACTIVATIONS = ("sigmoid", "relu", "tanh")
BN_MODES = ("none", "pre", "post")
INITS = ("default", "xavier", "kaiming")
ENGINES = ("batched", "reference")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "float64")

# Column order of runs.csv and of every configuration dump (SPEC 5).
CONFIG_KEYS = (
    "dataset", "normalization", "activation", "bn", "depth", "width", "init",
    "momentum", "batch_size", "lr", "epochs", "seed",
)  # fmt: skip
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # also a file and DVC key name


class ParamsError(ValueError):
    """Every problem found in a params file, one readable line each."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        n = len(errors)
        head = f"{n} problem{'s' if n > 1 else ''} in the parameters:"
        super().__init__("\n".join([head, *(f"  - {e}" for e in errors)]))


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

    @property
    def num_features(self) -> int:
        return len(self.w) - 1 if self.bias else len(self.w)

    @property
    def n_train(self) -> int:
        return int(self.num_examples * self.train_fraction)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("name")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


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
    epochs: int
    seed: int

    @property
    def run_key(self) -> str:
        """Unique, stable and readable: every key, floats in shortest round-trip form."""
        return (
            f"{self.dataset}-{self.normalization}-{self.activation}-bn_{self.bn}"
            f"-d{self.depth}-w{self.width}-{self.init}-m{self.momentum!r}"
            f"-b{self.batch_size}-lr{self.lr!r}-e{self.epochs}-s{self.seed}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in CONFIG_KEYS}


@dataclass(frozen=True)
class Sweep:
    name: str
    axes: dict[str, tuple]  # keys given as lists, in file order
    runs: tuple[RunConfig, ...]


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


@dataclass(frozen=True)
class Params:
    datasets: dict[str, DatasetSpec]
    defaults: RunConfig
    sweeps: dict[str, Sweep]
    execution: Execution = field(default_factory=Execution)


# ---------------------------------------------------------------------------
# YAML: PyYAML follows YAML 1.1, where `1e-3` is a string; users (and DVC's own
# YAML 1.2 parser) read it as a number, so resolve it as one.


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _no_duplicate_keys(loader, node, deep=False):
    # Merge keys (`<<: *anchor`) may be overridden by explicit keys: not duplicates.
    keys = [
        loader.construct_object(k, deep=deep)
        for k, _ in node.value
        if k.tag != "tag:yaml.org,2002:merge"
    ]
    dup = sorted({str(k) for k in keys if keys.count(k) > 1})
    if dup:
        raise yaml.constructor.ConstructorError(
            None, None, f"duplicate key(s) {', '.join(dup)}", node.start_mark
        )
    return loader.construct_mapping(node, deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a syntax error becomes a ParamsError naming file, line and column."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ParamsError([f"{path}: cannot read the file ({e.strerror})"]) from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ParamsError([f"{path}:{where}: invalid YAML: {problem}"]) from None


# ---------------------------------------------------------------------------
# Validation. Each checker returns None when the value is fine, else what is allowed.


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    if not isinstance(v, int | float) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer too large for a float
        return False


def _choice(options):
    return lambda v: None if v in options else "one of " + ", ".join(options)


def _int_at_least(lo):
    return lambda v: None if _is_int(v) and v >= lo else f"an integer >= {lo}"


def _name(v):
    return None if isinstance(v, str) and NAME_RE.fullmatch(v) else "a name of letters, digits, _ -"


def _lr(v):
    return None if _is_num(v) and v > 0 else "a finite number > 0"


def _momentum(v):
    return None if _is_num(v) and 0 < v <= 1 else "a number in (0, 1]"


def _seed(v):
    return None if _is_int(v) and 0 <= v < 2**63 else "an integer in [0, 2**63)"


RUN_CHECKS = {
    "dataset": _name,
    "normalization": _choice(NORMALIZATIONS),
    "activation": _choice(ACTIVATIONS),
    "bn": _choice(BN_MODES),
    "depth": _int_at_least(1),
    "width": _int_at_least(1),
    "init": _choice(INITS),
    "momentum": _momentum,
    "batch_size": _int_at_least(2),
    "lr": _lr,
    "epochs": _int_at_least(1),
    "seed": _seed,
}


class _Errors:
    def __init__(self, file: str):
        self.file, self.items = file, []

    def add(self, path: str, value: Any, allowed: str):
        self.items.append(f"{self.file}: {path}: {_show(value)} is not allowed; expected {allowed}")

    def raw(self, path: str, message: str):
        self.items.append(f"{self.file}: {path}: {message}")


def _show(v: Any) -> str:
    s = repr(v) if isinstance(v, str) else yaml.safe_dump(v, default_flow_style=True).strip()
    s = s.removesuffix("\n...").strip()
    return s if len(s) <= 60 else s[:57] + "..."


def _section(raw: dict, key: str, err: _Errors, required=True) -> dict | None:
    if key not in raw:
        if required:
            err.raw(key, "missing section")
        return None
    v = raw[key]
    if not isinstance(v, dict) or not v:
        err.add(key, v, "a non-empty mapping")
        return None
    return v


def _unknown(d: dict, allowed, path: str, err: _Errors):
    for k in d:
        if k not in allowed:
            err.raw(f"{path}.{k}" if path else str(k),
                    f"unknown key; expected one of {', '.join(allowed)}")  # fmt: skip


DATASET_KEYS = ("num_examples", "w", "bias", "delta", "deg", "seed", "train_fraction",
                "feature_scale", "feature_shift")  # fmt: skip


def _dataset(name: str, d: Any, err: _Errors) -> DatasetSpec | None:
    p = f"datasets.{name}"
    n0 = len(err.items)
    if not (isinstance(name, str) and NAME_RE.fullmatch(name)):
        err.add(p, name, "a data set name of letters, digits, _ - (quote a number)")
    if not isinstance(d, dict):
        err.add(p, d, "a mapping of " + ", ".join(DATASET_KEYS[:7]))
        return None
    _unknown(d, DATASET_KEYS, p, err)
    for k in DATASET_KEYS[:7]:
        if k not in d:
            err.raw(f"{p}.{k}", "missing key")
    g = d.get
    checks = {
        "num_examples": _int_at_least(3),
        "w": lambda v: None if isinstance(v, list) and v and all(map(_is_num, v))
        else "a non-empty list of finite numbers",
        "bias": lambda v: None if isinstance(v, bool) else "true or false",
        "delta": lambda v: None if _is_num(v) and v >= 0 else "a finite number >= 0",
        "deg": _int_at_least(1),
        "seed": _seed,
        "train_fraction": lambda v: None if _is_num(v) and 0 < v < 1 else "a number in (0, 1)",
    }  # fmt: skip
    for k, check in checks.items():
        if k in d and (allowed := check(d[k])):
            err.add(f"{p}.{k}", d[k], allowed)
    if len(err.items) > n0:
        return None
    nf = len(d["w"]) - (1 if d["bias"] else 0)
    if nf < 1:
        err.add(
            f"{p}.w", d["w"], "at least 2 numbers when bias is true (the last is the intercept)"
        )
        return None
    per_feature = {}
    for k, dflt in (("feature_scale", 1.0), ("feature_shift", 0.0)):
        v = g(k, dflt)
        v = [v] * nf if _is_num(v) else v
        if not (isinstance(v, list) and len(v) == nf and all(map(_is_num, v))):
            err.add(f"{p}.{k}", g(k), f"a finite number or a list of {nf} (one per feature)")
        per_feature[k] = tuple(float(x) for x in v) if isinstance(v, list) else ()
    n_train = int(d["num_examples"] * d["train_fraction"])
    if n_train < 2 or d["num_examples"] - n_train < 1:
        err.raw(p, f"num_examples {d['num_examples']} x train_fraction {d['train_fraction']} "
                   f"leaves {n_train} train and {d['num_examples'] - n_train} test rows; "
                   "need at least 2 and 1")  # fmt: skip
    if len(err.items) > n0:
        return None
    return DatasetSpec(
        name=name, num_examples=d["num_examples"], w=tuple(float(x) for x in d["w"]),
        bias=d["bias"], delta=float(d["delta"]), deg=d["deg"], seed=d["seed"],
        train_fraction=float(d["train_fraction"]), **per_feature,
    )  # fmt: skip


def _coerce(key: str, v: Any) -> Any:
    return float(v) if key in ("momentum", "lr") else v


def _execution(d: Any, err: _Errors) -> Execution:
    if d is None:
        return Execution()
    if not isinstance(d, dict):
        err.add("execution", d, "a mapping")
        return Execution()
    names = [f.name for f in fields(Execution)]
    _unknown(d, names, "execution", err)
    checks = {"engine": _choice(ENGINES), "device": _choice(DEVICES), "threads": _int_at_least(1),
              "dtype": _choice(DTYPES), "max_runs": _int_at_least(1),
              "log_workers": lambda v: None if v == "auto" else _int_at_least(1)(v)
              and "auto or an integer >= 1",
              "log_retry_s": lambda v: None if _is_num(v) and 0 <= v < math.inf
              else "a number of seconds >= 0"}  # fmt: skip
    ok = {}
    for k, v in d.items():
        if k in checks:
            if allowed := checks[k](v):
                err.add(f"execution.{k}", v, allowed)
            else:
                ok[k] = v
    return Execution(**ok)


def validate(raw: Any, file: str = "params.yaml") -> Params:
    """Validate a parsed params file completely; raise ParamsError listing every problem."""
    err = _Errors(file)
    if not isinstance(raw, dict):
        raise ParamsError([f"{file}: expected a mapping with datasets, defaults, sweeps"])
    _unknown(raw, ("datasets", "defaults", "sweeps", "execution"), "", err)

    datasets = {}
    for name, d in (_section(raw, "datasets", err) or {}).items():
        if (spec := _dataset(name, d, err)) is not None:
            datasets[str(name)] = spec
    raw_ds = raw.get("datasets")
    known_ds = set(datasets) | ({str(n) for n in raw_ds} if isinstance(raw_ds, dict) else set())

    def check_value(key, v, path):
        if allowed := RUN_CHECKS[key](v):
            err.add(path, v, allowed)
            return False
        if key == "dataset" and v not in known_ds:
            err.add(path, v, "a data set defined under datasets: " + ", ".join(sorted(known_ds)))
            return False
        return True

    dflt_raw = _section(raw, "defaults", err) or {}
    _unknown(dflt_raw, CONFIG_KEYS, "defaults", err)
    defaults_ok = bool(dflt_raw)
    for k in CONFIG_KEYS:
        if k not in dflt_raw:
            if dflt_raw:
                err.raw(f"defaults.{k}", "missing key (every sweep starts from defaults)")
            defaults_ok = False
        elif not check_value(k, dflt_raw[k], f"defaults.{k}"):
            defaults_ok = False
    defaults = (
        RunConfig(**{k: _coerce(k, dflt_raw[k]) for k in CONFIG_KEYS}) if defaults_ok else None
    )

    execution = _execution(raw.get("execution"), err)

    sweeps = {}
    for sname, s in (_section(raw, "sweeps", err) or {}).items():
        sname, p = str(sname), f"sweeps.{sname}"
        if not NAME_RE.fullmatch(sname):
            err.add(p, sname, "a sweep name of letters, digits, _ -")
            continue
        if s is None:
            s = {}
        if not isinstance(s, dict):
            err.add(p, s, "a mapping of defaults keys to a value or a list of values")
            continue
        _unknown(s, CONFIG_KEYS, p, err)
        axes, fixed, ok = {}, {}, True
        for k, v in s.items():
            if k not in CONFIG_KEYS:
                ok = False
                continue
            if isinstance(v, list):
                if not v:
                    err.add(f"{p}.{k}", v, "a value or a non-empty list of values")
                    ok = False
                    continue
                for i, x in enumerate(v):
                    ok &= check_value(k, x, f"{p}.{k}[{i}]")
                seen = []  # a list: a bad value may be unhashable
                for i, x in enumerate(v):
                    if _coerce(k, x) in seen:
                        err.raw(f"{p}.{k}[{i}]",
                                f"{_show(x)} repeats an earlier value of the axis "
                                "(equal configurations are the same run)")  # fmt: skip
                        ok = False
                    seen.append(_coerce(k, x))
                axes[k] = tuple(_coerce(k, x) for x in v)
            else:
                ok &= check_value(k, v, f"{p}.{k}")
                fixed[k] = _coerce(k, v)
        if not ok or defaults is None:
            continue
        size = math.prod(len(v) for v in axes.values())
        if size > execution.max_runs:
            err.raw(p, f"expands to {size:,} runs, more than execution.max_runs = "
                       f"{execution.max_runs:,}; shorten an axis or raise the limit")  # fmt: skip
            continue
        base = {**defaults.as_dict(), **fixed}
        runs = tuple(
            RunConfig(**{**base, **dict(zip(axes, combo, strict=True))})
            for combo in itertools.product(*axes.values())
        )
        # Cross-key checks, reported once per sweep and value.
        bad_bs = {}
        for r in runs:
            ds = datasets.get(r.dataset)
            if ds is not None and r.batch_size > ds.n_train:
                bad_bs.setdefault((r.batch_size, r.dataset), ds.n_train)
        # Report where the clash is written: a default batch size too large for the
        # defaults' own data set is reported once, at defaults.batch_size.
        where = "batch_size" if "batch_size" in s else "dataset" if "dataset" in s else None
        for (bs, dsn), n_train in sorted(bad_bs.items()) if where else ():
            err.raw(f"{p}.{where}",
                    f"{bs} is larger than the {n_train} train rows of data set {dsn!r}; "
                    f"expected 2 <= batch_size <= {n_train}")  # fmt: skip
        if not bad_bs:
            sweeps[sname] = Sweep(name=sname, axes=axes, runs=runs)

    if defaults is not None and defaults.dataset in datasets:
        n_train = datasets[defaults.dataset].n_train
        if defaults.batch_size > n_train:
            err.raw("defaults.batch_size",
                    f"{defaults.batch_size} is larger than the {n_train} train rows of data set "
                    f"{defaults.dataset!r}")  # fmt: skip
    if err.items:
        raise ParamsError(err.items)
    return Params(datasets=datasets, defaults=defaults, sweeps=sweeps, execution=execution)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file (SPEC 1, 6)."""
    return validate(read_yaml(path), file=str(path))


def used_pairs(sweep: Sweep) -> list[tuple[str, str]]:
    """The (dataset, normalization) pairs a sweep's runs train on, sorted."""
    return sorted({(r.dataset, r.normalization) for r in sweep.runs})
