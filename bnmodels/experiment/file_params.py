"""The `file_datasets` section of params.yaml: data sets read from CSV or Parquet files.

A section of its own, beside the generated `datasets`, because dvc.yaml gives each of
these data sets a stage that depends on its file (`read@<name>`), which DVC's `foreach`
can only do over entries that all name a file. Sweeps name either kind by name alone.
The file is opened here only to check that it is what its name says and to count its rows
(the split sizes follow from them), with the standard library (every stage validates
params.yaml; pandas would cost each 0.2 s); its contents are checked by the read stage
(`bnmodels.experiment.files.read_table`).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from bnmodels.experiment.checks import (
    ErrorList,
    check_draws,
    check_seed,
    check_split_rows,
    check_train_fraction,
    unknown_keys,
)
from bnmodels.experiment.config import FILE_SUFFIXES, NAME_RE, TASKS, FileSpec

REQUIRED = ("file", "target", "task", "seed", "train_fraction")
OPTIONAL = ("features", "draws")


def _str(v: Any) -> bool:
    return isinstance(v, str) and v != ""


PARQUET_MAGIC = b"PAR1"


class DataFileError(ValueError):
    """Every problem of one data file, one readable line each."""

    def __init__(self, file: str, problems: list[str]):
        self.problems = [f"{file}: {p}" for p in problems]
        n = len(problems)
        head = f"{n} problem{'s' if n > 1 else ''} in data file {file}:"
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))


def file_kind(path: Path) -> str:
    """The file's format from its name; what it holds is checked as it is read."""
    return "parquet" if path.suffix.lower() == ".parquet" else "csv"


def _not_a(path: Path) -> str | None:
    """Why a file is not what its extension says, or None."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if file_kind(path) == "parquet":
        ok = head[:4] == PARQUET_MAGIC
        return None if ok else "is not a Parquet file (it does not start with PAR1)"
    if head[:4] == PARQUET_MAGIC:
        return "is not a CSV file: it holds Parquet data (name it .parquet)"
    if b"\0" in head:
        return "is not a CSV file: it holds binary data"
    return None


def check_file(spec: FileSpec) -> None:
    """DataFileError unless the file exists and is what its extension says."""
    path = Path(spec.path)
    if not path.is_file():
        where = "" if path.is_absolute() else f" (looked for {path.resolve()})"
        raise DataFileError(spec.file, ["file not found" + where])
    if why := _not_a(path):
        raise DataFileError(spec.file, [why])


def count_rows(spec: FileSpec) -> int:
    """The data rows of the file: a Parquet file's metadata, a CSV file's records after
    the header (blank lines skipped, as pandas does), read with the standard library."""
    path = Path(spec.path)
    check_file(spec)
    if file_kind(path) == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows
        except Exception as e:  # noqa: BLE001 - pyarrow's errors have no common base
            raise DataFileError(spec.file, [f"cannot be read as PARQUET: {e}"]) from None
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            if next(reader, None) is None:
                raise DataFileError(spec.file, ["is empty: no header line"])
            return sum(1 for row in reader if row)
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataFileError(spec.file, [f"cannot be read as CSV: {e}"]) from None


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
