"""params.yaml: reading and complete validation, section by section (SPEC 1, 6).

Each section (data sets, defaults, execution, sweeps) has one function that builds its
records and returns the problems it found; `validate` runs them all and reports every
problem of the file at once. Nothing else reads params.yaml.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

from bnmodels.errors import ParamsError
from bnmodels.experiment.checks import (
    ErrorList,
    check_draws,
    check_seed,
    check_split_rows,
    check_train_fraction,
    int_at_least,
    is_int,
    is_num,
    mapping_section,
    one_of,
    read_yaml,
    show_value,
    unknown_keys,
)
from bnmodels.experiment.config import (
    ACTIVATIONS,
    BN_MODES,
    BUDGET_KEYS,
    CLUSTERS,
    CONFIG_KEYS,
    DEVICES,
    DTYPES,
    ENGINES,
    INITS,
    NAME_RE,
    NORM_KEYS,
    NORM_PLACES,
    NORMALIZATIONS,
    NORMS,
    ClusterSpec,
    DatasetSpec,
    DataSpec,
    Execution,
    Params,
    RunConfig,
    Sweep,
    canonical_norm,
    epochs_for_steps,
    run_draw,
)

# `claims` is read by bnmodels.study.load (the plan and aggregate stages), not here: a stage
# that trains never depends on how claims are judged.
TOP_KEYS = ("datasets", "file_datasets", "defaults", "sweeps", "execution", "claims")
# Keys of a sweep that say what it records rather than which runs it holds.
SWEEP_SETTINGS = ("probes",)


# ---------------------------------------------------------------------------
# Validation. Each checker returns None when the value is fine, else what is allowed.


def _name(v):
    return None if isinstance(v, str) and NAME_RE.fullmatch(v) else "a name of letters, digits, _ -"


def _lr(v):
    return None if is_num(v) and v > 0 else "a finite number > 0"


def _momentum(v):
    return None if is_num(v) and 0 < v <= 1 else "a number in (0, 1]"


RUN_CHECKS = {
    "dataset": _name,
    "normalization": one_of(NORMALIZATIONS),
    "activation": one_of(ACTIVATIONS),
    "bn": one_of(BN_MODES),
    "norm": one_of(NORMS),
    "norm_at": one_of(NORM_PLACES),
    "groups": int_at_least(1),
    "depth": int_at_least(1),
    "width": int_at_least(1),
    "init": one_of(INITS),
    "momentum": _momentum,
    "batch_size": int_at_least(2),
    "lr": _lr,
    "epochs": int_at_least(1),
    "seed": check_seed,
    "steps": int_at_least(1),  # the other budget (BUDGET_KEYS): optional
}
# every key a run's configuration may give; the normalization by `bn` (the shorthand)
# or by NORM_KEYS, never both in one section (of these only `norm` is needed: norm_at
# defaults to pre)
RUN_KEYS = (*CONFIG_KEYS, *NORM_KEYS, "steps")


DATASET_CHECKS = {  # the required fields of a data set, in DATASET_KEYS order
    "num_examples": int_at_least(3),
    "w": lambda v: (
        None
        if isinstance(v, list) and v and all(map(is_num, v))
        else "a non-empty list of finite numbers"
    ),
    "bias": lambda v: None if isinstance(v, bool) else "true or false",
    "delta": lambda v: None if is_num(v) and v >= 0 else "a finite number >= 0",
    "deg": int_at_least(1),
    "seed": check_seed,
    "train_fraction": check_train_fraction,
}


def _per_feature(d: dict, nf: int, p: str, err: ErrorList) -> dict[str, tuple[float, ...]]:
    """feature_scale and feature_shift: a number for every feature, or one per feature."""
    out = {}
    for k, default in (("feature_scale", 1.0), ("feature_shift", 0.0)):
        v = d.get(k, default)
        v = [v] * nf if is_num(v) else v
        if not (isinstance(v, list) and len(v) == nf and all(map(is_num, v))):
            err.add(f"{p}.{k}", d.get(k), f"a finite number or a list of {nf} (one per feature)")
        out[k] = tuple(float(x) for x in v) if isinstance(v, list) else ()
    return out


CLUSTER_CHECKS = {  # the required fields of a classification data set (SPEC 2b)
    "num_class": int_at_least(2),
    "num_examples": int_at_least(1),
    "num_inputs": int_at_least(1),
    "mean": lambda v: None if is_num(v) and v >= 0 else "a finite number >= 0",
    "std": lambda v: None if is_num(v) and v > 0 else "a finite number > 0",
    "seed": check_seed,
    "train_fraction": DATASET_CHECKS["train_fraction"],
}
OPTIONAL_DATASET_KEYS = ("feature_scale", "feature_shift", "draws")


def _fields(d: dict, checks: dict, p: str, err: ErrorList) -> None:
    """Unknown, missing and invalid fields of one data set entry."""
    unknown_keys(d, (*checks, *OPTIONAL_DATASET_KEYS), p, err)
    for k, check in checks.items():
        if k not in d:
            err.raw(f"{p}.{k}", "missing key")
        elif allowed := check(d[k]):
            err.add(f"{p}.{k}", d[k], allowed)


def _dataset(name: str, d: Any, err: ErrorList) -> DatasetSpec | ClusterSpec | None:
    """One entry of `datasets` (a classification set if it has `num_class`), or None
    (with its problems in `err`)."""
    p = f"datasets.{name}"
    n0 = len(err.items)
    if not (isinstance(name, str) and NAME_RE.fullmatch(name)):
        err.add(p, name, "a data set name of letters, digits, _ - (quote a number)")
    if not isinstance(d, dict):
        err.add(p, d, "a mapping of " + ", ".join(DATASET_CHECKS) + " (or of num_class, ...)")
        return None
    if "num_class" in d:
        return _cluster_dataset(name, d, err)
    _fields(d, DATASET_CHECKS, p, err)
    if len(err.items) > n0:
        return None
    nf = len(d["w"]) - (1 if d["bias"] else 0)
    if nf < 1:
        allowed = "at least 2 numbers when bias is true (the last is the intercept)"
        err.add(f"{p}.w", d["w"], allowed)
        return None
    per_feature = {**_per_feature(d, nf, p, err), **check_draws(d, p, err)}
    what = f"num_examples {d['num_examples']}"
    check_split_rows(p, d["num_examples"], d["train_fraction"], what, err)
    if len(err.items) > n0:
        return None
    return DatasetSpec(
        name=name,
        num_examples=d["num_examples"],
        w=tuple(float(x) for x in d["w"]),
        bias=d["bias"],
        delta=float(d["delta"]),
        deg=d["deg"],
        seed=d["seed"],
        train_fraction=float(d["train_fraction"]),
        **per_feature,
    )


def _cluster_dataset(name: str, d: dict, err: ErrorList) -> ClusterSpec | None:
    p = f"datasets.{name}"
    n0 = len(err.items)
    _fields(d, CLUSTER_CHECKS, p, err)
    if len(err.items) > n0:
        return None
    per_feature = {**_per_feature(d, d["num_inputs"], p, err), **check_draws(d, p, err)}
    rows = d["num_class"] * d["num_examples"]
    what = f"num_class {d['num_class']} x num_examples {d['num_examples']}"
    check_split_rows(p, rows, d["train_fraction"], what, err)
    if len(err.items) > n0:
        return None
    return ClusterSpec(
        name=name,
        num_class=d["num_class"],
        num_examples=d["num_examples"],
        num_inputs=d["num_inputs"],
        mean=float(d["mean"]),
        std=float(d["std"]),
        seed=d["seed"],
        train_fraction=float(d["train_fraction"]),
        **per_feature,
    )


def _coerce(key: str, v: Any) -> Any:
    return float(v) if key in ("momentum", "lr") else v


def _execution(d: Any, err: ErrorList) -> Execution:
    if d is None:
        return Execution()
    if not isinstance(d, dict):
        err.add("execution", d, "a mapping")
        return Execution()
    names = [f.name for f in fields(Execution)]
    unknown_keys(d, names, "execution", err)
    checks = {
        "engine": one_of(ENGINES),
        "device": one_of(DEVICES),
        "threads": int_at_least(1),
        "dtype": one_of(DTYPES),
        "max_runs": int_at_least(1),
        "log_workers": lambda v: (
            None if v == "auto" or (is_int(v) and v >= 1) else "auto or an integer >= 1"
        ),
        "log_retry_s": lambda v: None if is_num(v) and v >= 0 else "a number of seconds >= 0",
        "workers": lambda v: (
            None if v == "auto" or (is_int(v) and v >= 1) else "auto or an integer >= 1"
        ),
        "cluster": one_of(CLUSTERS),
        "address": lambda v: None if isinstance(v, str) else "a string (host:port or ray://...)",
    }
    ok = {}
    for k, v in d.items():
        if k in checks:
            if allowed := checks[k](v):
                err.add(f"execution.{k}", v, allowed)
            else:
                ok[k] = v
    return Execution(**ok)


def _check_datasets(raw: dict, file: str) -> tuple[dict[str, DataSpec], list[str]]:
    """The `datasets` section: one DatasetSpec per valid entry (`{}` when every data set
    is read from a file: `file_datasets`)."""
    err, datasets = ErrorList(file), {}
    if raw.get("datasets") == {} and raw.get("file_datasets"):
        return datasets, err.items
    for name, d in (mapping_section(raw, "datasets", err) or {}).items():
        if (spec := _dataset(name, d, err)) is not None:
            datasets[str(name)] = spec
    return datasets, err.items


def _check_value(key: str, v: Any, path: str, known_ds: set[str], err: ErrorList) -> bool:
    """One configuration value (a default, a sweep's scalar or an axis entry)."""
    if allowed := RUN_CHECKS[key](v):
        err.add(path, v, allowed)
        return False
    if key == "dataset" and v not in known_ds:
        err.add(path, v, "a data set defined under datasets: " + ", ".join(sorted(known_ds)))
        return False
    return True


def _budget(d: dict, p: str, err: ErrorList) -> bool:
    """At most one training budget, epochs or steps (BUDGET_KEYS), in a section."""
    if all(k in d for k in BUDGET_KEYS):
        err.raw(
            p,
            "epochs and steps are both given; give one training budget: epochs (whole "
            "passes over the train rows) or steps (SGD steps, the last epoch possibly partial)",
        )
        return False
    return True


def _run(values: dict, datasets: dict[str, DataSpec]) -> RunConfig:
    """A RunConfig from a complete set of values, with what follows from its data set: a
    steps budget sets the epochs it spans on the run's own data set and batch size (a
    placeholder when those are invalid: the problem is reported where it is written), and
    a data set of several draws the run's draw (`run_draw`)."""
    values = dict(values)  # the defaults' draw, if any, is replaced: the run's own
    ds, steps = datasets.get(values["dataset"]), values.get("steps")
    if steps is not None:
        bs = values["batch_size"]
        fits = ds is not None and bs <= ds.n_train
        values["epochs"] = epochs_for_steps(steps, ds.n_train, bs) if fits else steps
    values["draw"] = run_draw(values["seed"], ds.draws) if ds is not None else None
    if values.get("norm") is not None:  # bn follows from the norm keys
        norm, at, _ = canonical_norm("none", values["norm"], values.get("norm_at"), None)
        values["bn"] = at if norm == "batch" else "none"
    return RunConfig(**values)


def _norm_keys(d: dict, p: str, err: ErrorList) -> bool:
    """`bn` (the shorthand) or the norm keys in one section, never both."""
    if "bn" in d and any(k in d for k in NORM_KEYS):
        err.raw(
            p,
            "bn and norm/norm_at/groups are both given; bn is the shorthand for norm: "
            "batch, norm_at: <bn> (bn: none for norm: none): give one of them",
        )
        return False
    return True


def _group_problems(runs, p: str, err: ErrorList) -> bool:
    """Group normalization needs `groups` dividing the width into groups of at least two
    units (a group of one unit normalizes to 0: the layer's output would be its shift
    alone): reported once per (width, groups)."""
    bad = sorted(
        {
            (r.width, r.groups)
            for r in runs
            if r.norm == "group" and (not r.groups or r.width % r.groups or r.width < 2 * r.groups)
        }
    )
    for width, groups in bad:
        what = "no groups" if not groups else f"groups: {groups}"
        err.raw(
            p,
            f"norm: group with {what} at width {width}; expected groups: a divisor of "
            "the width (units per hidden layer) that leaves at least 2 units per group",
        )
    return not bad


def _check_defaults(raw: dict, datasets: dict[str, DataSpec], known_ds: set[str], file: str):
    """The `defaults` section: a complete RunConfig, or None when anything is wrong.

    Every key is required, with exactly one budget: epochs or steps."""
    err = ErrorList(file)
    d = mapping_section(raw, "defaults", err) or {}
    unknown_keys(d, RUN_KEYS, "defaults", err)
    ok = bool(d) and _budget(d, "defaults", err) and _norm_keys(d, "defaults", err)
    budget = next((k for k in BUDGET_KEYS if k in d), None)
    by_norm = "norm" in d  # the normalization by NORM_KEYS, else by bn (required then)
    for k in NORM_KEYS if by_norm else ():
        if k in d:
            ok &= _check_value(k, d[k], f"defaults.{k}", known_ds, err)
    for k in (*(k for k in CONFIG_KEYS if k != "epochs"), budget or "epochs"):
        if k == "bn" and by_norm:
            continue
        if k not in d:
            if d:
                what = "epochs or steps: the training budget" if k == "epochs" else "key"
                err.raw(f"defaults.{k}", f"missing {what} (every sweep starts from defaults)")
            ok = False
        elif not _check_value(k, d[k], f"defaults.{k}", known_ds, err):
            ok = False
    if not ok:
        return None, err.items
    defaults = _run({"bn": "none", **{k: _coerce(k, d[k]) for k in RUN_KEYS if k in d}}, datasets)
    if not _group_problems([defaults], "defaults", err):
        return None, err.items
    if defaults.dataset in datasets and defaults.batch_size > datasets[defaults.dataset].n_train:
        n_train = datasets[defaults.dataset].n_train
        err.raw(
            "defaults.batch_size",
            f"{defaults.batch_size} is larger than the {n_train} train rows of data set "
            f"{defaults.dataset!r}",
        )
    return defaults, err.items


def _check_execution(raw: dict, file: str) -> tuple[Execution, list[str]]:
    """The optional `execution` section (how runs are computed, never what they are)."""
    err = ErrorList(file)
    return _execution(raw.get("execution"), err), err.items


def _axis(k: str, v: list, path: str, known_ds: set[str], err: ErrorList) -> bool:
    """A list value of a sweep: non-empty, every entry valid, no entry repeated."""
    if not v:
        err.add(path, v, "a value or a non-empty list of values")
        return False
    ok = all([_check_value(k, x, f"{path}[{i}]", known_ds, err) for i, x in enumerate(v)])
    seen = []  # a list: a bad value may be unhashable
    for i, x in enumerate(v):
        if _coerce(k, x) in seen:
            err.raw(
                f"{path}[{i}]",
                f"{show_value(x)} repeats an earlier value of the axis "
                "(equal configurations are the same run)",
            )
            ok = False
        seen.append(_coerce(k, x))
    return ok


def _check_sweep(name: str, s: dict, defaults: RunConfig | None, ctx: dict, err: ErrorList):
    """One sweep: its axes and fixed values, expanded into runs; None when invalid."""
    p = f"sweeps.{name}"
    unknown_keys(s, (*RUN_KEYS, *SWEEP_SETTINGS), p, err)
    axes, fixed, ok = {}, {}, all(k in RUN_KEYS or k in SWEEP_SETTINGS for k in s)
    ok &= _budget(s, p, err)
    ok &= _norm_keys(s, p, err)
    probes = s.get("probes", False)
    if not isinstance(probes, bool):
        err.add(f"{p}.probes", probes, "true or false")
        ok = False
    for k, v in s.items():
        if k not in RUN_KEYS:
            continue
        if isinstance(v, list):
            ok &= _axis(k, v, f"{p}.{k}", ctx["known_ds"], err)
            axes[k] = tuple(_coerce(k, x) for x in v)
        else:
            ok &= _check_value(k, v, f"{p}.{k}", ctx["known_ds"], err)
            fixed[k] = _coerce(k, v)
    if not ok or defaults is None:
        return None
    size, limit = math.prod(len(v) for v in axes.values()), ctx["execution"].max_runs
    if size > limit:
        err.raw(
            p,
            f"expands to {size:,} runs, more than execution.max_runs = {limit:,}; "
            "shorten an axis or raise the limit",
        )
        return None
    # A sweep's budget replaces the defaults' (epochs or steps); a steps budget sets
    # each run's epochs from its own data set and batch size (`_run`).
    base = defaults.as_dict()
    if "bn" in s:  # the shorthand replaces the defaults' normalization
        base = {k: v for k, v in base.items() if k not in NORM_KEYS}
    base.update(fixed)
    if "epochs" in s:
        base.pop("steps", None)
    if "steps" in base:
        base.pop("epochs")
    # dict.fromkeys: without a normalization norm_at and groups mean nothing, so
    # norm: none runs of a norm_at axis are one run
    runs = tuple(
        dict.fromkeys(
            _run({**base, **dict(zip(axes, combo, strict=True))}, ctx["datasets"])
            for combo in itertools.product(*axes.values())
        )
    )
    if not _group_problems(runs, p, err):
        return None
    # Batch sizes larger than a data set's train rows, reported once per value, where
    # the clash is written (a default clashing with the defaults' own data set is
    # reported once, at defaults.batch_size).
    bad_bs = {}
    for r in runs:
        ds = ctx["datasets"].get(r.dataset)
        if ds is not None and r.batch_size > ds.n_train:
            bad_bs.setdefault((r.batch_size, r.dataset), ds.n_train)
    where = "batch_size" if "batch_size" in s else "dataset" if "dataset" in s else None
    for (bs, dsn), n_train in sorted(bad_bs.items()) if where else ():
        err.raw(
            f"{p}.{where}",
            f"{bs} is larger than the {n_train} train rows of data set {dsn!r}; "
            f"expected 2 <= batch_size <= {n_train}",
        )
    return None if bad_bs else Sweep(name=name, axes=axes, runs=runs, probes=probes)


def _check_sweeps(raw: dict, defaults: RunConfig | None, ctx: dict, file: str):
    """The `sweeps` section: each valid sweep with its runs."""
    err, sweeps = ErrorList(file), {}
    for name, s in (mapping_section(raw, "sweeps", err) or {}).items():
        name = str(name)
        if not NAME_RE.fullmatch(name):
            err.add(f"sweeps.{name}", name, "a sweep name of letters, digits, _ -")
        elif not isinstance(s if s is not None else {}, dict):
            err.add(
                f"sweeps.{name}", s, "a mapping of defaults keys to a value or a list of values"
            )
        elif (sweep := _check_sweep(name, s or {}, defaults, ctx, err)) is not None:
            sweeps[name] = sweep
    return sweeps, err.items


def check(raw: Any, file: str = "params.yaml") -> tuple[Params, list[str]]:
    """Every problem of the datasets, defaults, execution and sweeps sections, and the
    records of what is valid (a sweep with a problem is left out of `sweeps`)."""
    if not isinstance(raw, dict):
        raise ParamsError([f"{file}: expected a mapping with datasets, defaults, sweeps"])
    err = ErrorList(file)
    unknown_keys(raw, TOP_KEYS, "", err)
    datasets, ds_errors = _check_datasets(raw, file)
    raw_ds = raw.get("datasets")
    # Sweeps may name a data set whose own entry is invalid: that error is reported once.
    known_ds = set(datasets) | ({str(n) for n in raw_ds} if isinstance(raw_ds, dict) else set())
    if "file_datasets" in raw:  # read from files (file_params.py; pandas only when used)
        from bnmodels.experiment.file_params import check_file_datasets

        files, file_errors = check_file_datasets(raw, Path(file).parent, known_ds, file)
        raw_files = raw["file_datasets"]
        datasets = {**datasets, **files}
        known_ds |= {str(n) for n in raw_files} if isinstance(raw_files, dict) else set()
        ds_errors += file_errors
    defaults, default_errors = _check_defaults(raw, datasets, known_ds, file)
    execution, exec_errors = _check_execution(raw, file)
    ctx = {"datasets": datasets, "known_ds": known_ds, "execution": execution}
    sweeps, sweep_errors = _check_sweeps(raw, defaults, ctx, file)
    errors = err.items + ds_errors + default_errors + exec_errors + sweep_errors
    params = Params(datasets=datasets, defaults=defaults, sweeps=sweeps, execution=execution)
    return params, errors


def validate(raw: Any, file: str = "params.yaml") -> Params:
    """Validate a parsed params file completely (its claims aside: bnmodels.study.load); raise
    ParamsError listing every problem."""
    params, errors = check(raw, file)
    if errors:
        raise ParamsError(errors)
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file (SPEC 1, 6)."""
    return validate(read_yaml(path), file=str(path))
