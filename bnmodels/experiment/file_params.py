"""The `file_datasets` section of params.yaml: data sets read from CSV or Parquet files.

A section of its own, beside the generated `datasets`, because dvc.yaml gives each of
these data sets a stage that depends on its file (`read@<name>`), which DVC's `foreach`
can only do over entries that all name a file. Sweeps name either kind by name alone.
The file is opened here only to count its rows (the split sizes follow from them); its
contents are checked by the read stage (`bnmodels.experiment.files.read_table`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bnmodels.experiment.config import FILE_SUFFIXES, NAME_RE, TASKS, FileSpec
from bnmodels.experiment.params import (
    ErrorList,
    check_draws,
    check_seed,
    check_split_rows,
    check_train_fraction,
    unknown_keys,
)

REQUIRED = ("file", "target", "task", "seed", "train_fraction")
OPTIONAL = ("features", "draws")


def _str(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def file_dataset(name: str, d: Any, base: Path, err: ErrorList) -> FileSpec | None:
    """One entry of `file_datasets`, or None (with its problems in `err`)."""
    p = f"file_datasets.{name}"
    n0 = len(err.items)
    if not (isinstance(name, str) and NAME_RE.fullmatch(name)):
        err.add(p, name, "a data set name of letters, digits, _ - (quote a number)")
    if not isinstance(d, dict):
        err.add(p, d, "a mapping of " + ", ".join(REQUIRED) + " (and optionally features)")
        return None
    unknown_keys(d, (*REQUIRED, *OPTIONAL), p, err)
    for k in REQUIRED:
        if k not in d:
            err.raw(f"{p}.{k}", "missing key")
    f = d.get("file")
    if "file" in d and not (_str(f) and Path(f).suffix.lower() in FILE_SUFFIXES):
        err.add(f"{p}.file", f, "a path ending in " + " or ".join(FILE_SUFFIXES))
    for k in ("target",):
        if k in d and not _str(d[k]):
            err.add(f"{p}.{k}", d[k], "a column name")
    if "task" in d and d["task"] not in TASKS:
        err.add(f"{p}.task", d["task"], "one of " + ", ".join(TASKS))
    if "seed" in d and (allowed := check_seed(d["seed"])):
        err.add(f"{p}.seed", d["seed"], allowed)
    tf = d.get("train_fraction")
    if "train_fraction" in d and (allowed := check_train_fraction(tf)):
        err.add(f"{p}.train_fraction", tf, allowed)
    features = d.get("features")
    if features is not None:
        ok = isinstance(features, list) and features and all(map(_str, features))
        if not ok:
            err.add(f"{p}.features", features, "a non-empty list of column names")
        elif len(set(features)) < len(features) or d.get("target") in features:
            err.add(f"{p}.features", features, "distinct column names, the target not among them")
    draws = check_draws(d, p, err)
    if len(err.items) > n0:
        return None
    path = f if Path(f).is_absolute() else os.path.normpath(base / f)
    spec = FileSpec(
        name=name,
        file=f,
        path=str(path),
        target=d["target"],
        task=d["task"],
        seed=d["seed"],
        train_fraction=float(tf),
        rows=0,
        features=tuple(features) if features is not None else None,
        **draws,
    )
    from bnmodels.experiment.files import DataFileError, count_rows

    try:
        rows = count_rows(spec)
    except DataFileError as e:
        for problem in e.problems:
            err.raw(f"{p}.file", problem)
        return None
    check_split_rows(p, rows, spec.train_fraction, f"the {rows} rows of {f}", err)
    if len(err.items) > n0:
        return None
    return FileSpec(**{**spec.__dict__, "rows": rows})


def check_file_datasets(raw: dict, base: Path, taken: set[str], file: str):
    """The optional `file_datasets` section: one FileSpec per valid entry (a name that
    `datasets` already has is a problem: sweeps name data sets by name alone)."""
    err, out = ErrorList(file), {}
    section = raw.get("file_datasets")
    if section is None:
        return out, err.items
    if not isinstance(section, dict):
        err.add("file_datasets", section, "a mapping (`{}` for none)")
        return out, err.items
    for name, d in section.items():
        if str(name) in taken:
            err.raw(f"file_datasets.{name}", "a data set of this name is under datasets too")
        elif (spec := file_dataset(str(name), d, base, err)) is not None:
            out[str(name)] = spec
    return out, err.items
