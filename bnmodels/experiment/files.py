"""Data sets read from a CSV or Parquet file (extension, SPEC 2c): checked, then split.

The file's existence, format and row count are checked when params are validated
(`bnmodels.experiment.file_params`, without pandas); `read_table` checks every column the
data set uses and reports every problem at once, each naming the file, the column and
the first bad row, before anything is written; `split_draw` makes draw d of the data
set: a random train/test split from seed + d, stratified by class for a classification
data set, so that runs of one seed stay paired.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bnmodels.experiment.config import FileSpec
from bnmodels.experiment.file_params import DataFileError, check_file, file_kind

if TYPE_CHECKING:  # params validation counts rows without torch (1.3 s to import)
    from bnmodels.experiment.data import Split


@dataclass(frozen=True)
class Table:
    """The checked columns of a data file: features as float32, labels as numbers."""

    x: np.ndarray  # (rows, features) float32
    y: np.ndarray  # (rows,) float32, or int64 class ids
    features: tuple[str, ...]
    classes: tuple | None  # class id i is classes[i] (sorted labels); None: regression


def _read(spec: FileSpec, columns: list | None = None, nrows: int | None = None):
    path = Path(spec.path)
    try:
        if file_kind(path) == "parquet":
            return pd.read_parquet(path, columns=columns)
        return pd.read_csv(path, usecols=columns, nrows=nrows)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        why = f"cannot be read as {file_kind(path).upper()}: {first}"
        raise DataFileError(spec.file, [why]) from None


def _row(i: int, kind: str) -> str:
    """Where row i (0-based) is: 1-based data row, and the line of a CSV (header line 1)."""
    return f"row {i + 1}" + (f" (line {i + 2})" if kind == "csv" else "")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _numeric(col: pd.Series, name: str, what: str, kind: str, problems: list) -> np.ndarray:
    """A column as float64, with its first non-numeric, missing or infinite value reported."""
    if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
        as_num = pd.to_numeric(col, errors="coerce")
        bad = as_num.isna().to_numpy() & col.notna().to_numpy()
        if bad.any():
            i = _first(bad)
            problems.append(
                f"{what} column {name!r}: non-numeric value {col.iloc[i]!r} at {_row(i, kind)}"
            )
            return np.zeros(len(col))
        col = as_num
    v = col.to_numpy(dtype=np.float64, na_value=np.nan)
    if (nan := np.isnan(v)).any():
        problems.append(f"{what} column {name!r}: missing value (NaN) at {_row(_first(nan), kind)}")
    elif (inf := np.isinf(v)).any():
        problems.append(f"{what} column {name!r}: infinite value at {_row(_first(inf), kind)}")
    return v


def _labels(col: pd.Series, name: str, kind: str, problems: list):
    """Class ids in the order of the sorted distinct labels (any type), and that order."""
    if (miss := col.isna().to_numpy()).any():
        problems.append(f"target column {name!r}: missing label at {_row(_first(miss), kind)}")
        return None, None
    values = col.to_numpy()
    try:
        classes = np.unique(values)
    except TypeError:  # labels of mixed types: ordered by their text
        classes = np.array(sorted(set(values.tolist()), key=str), dtype=object)
    if len(classes) < 2:
        problems.append(
            f"target column {name!r}: a single class ({classes[0]!r}) in every row; "
            "a classification data set needs two or more"
        )
        return None, None
    ids = {v: i for i, v in enumerate(classes.tolist())}
    y = np.fromiter((ids[v] for v in values.tolist()), dtype=np.int64, count=len(values))
    return y, tuple(classes.tolist())


def read_table(spec: FileSpec) -> Table:
    """Read and check the columns of a file data set; DataFileError lists every problem.

    A feature must be numeric, finite and not constant (z-score and min-max would divide
    by zero); a regression target numeric and finite; a classification target (labels of
    any type) complete, with two classes or more. The file must still hold the rows it
    held when params were validated."""
    kind = file_kind(Path(spec.path))
    check_file(spec)
    columns = _header(spec)
    wanted = [spec.target, *(spec.features or [])]
    missing = [c for c in dict.fromkeys(wanted) if c not in columns]
    if missing:
        have = ", ".join(map(repr, columns[:20])) + (", ..." if len(columns) > 20 else "")
        raise DataFileError(
            spec.file,
            [
                f"no column {c!r} (the {'target' if c == spec.target else 'feature'}); "
                f"the file has {have}"
                for c in missing
            ],
        )
    features = tuple(spec.features or (c for c in columns if c != spec.target))
    if not features:
        raise DataFileError(spec.file, [f"no feature column besides the target {spec.target!r}"])
    df = _read(spec, columns=[spec.target, *features])
    problems: list[str] = []
    if len(df.index) != spec.rows:
        problems.append(f"holds {len(df.index)} rows, {spec.rows} when params were read")
    x = np.empty((len(df.index), len(features)), dtype=np.float32)
    for j, c in enumerate(features):
        v = _numeric(df[c], c, "feature", kind, problems)
        if len(v) and np.all(v == v[0]) and np.isfinite(v[0]):
            problems.append(
                f"feature column {c!r}: constant ({float(v[0])!r} in every row); z-score and "
                "min-max scaling divide by its spread, which is 0: drop the column"
            )
        x[:, j] = v
    if spec.task == "classification":
        y, classes = _labels(df[spec.target], spec.target, kind, problems)
    else:
        y, classes = _numeric(df[spec.target], spec.target, "target", kind, problems), None
    if problems:
        raise DataFileError(spec.file, problems)
    y = y if classes is not None else y.astype(np.float32)
    return Table(x=x, y=y, features=features, classes=classes)


def _header(spec: FileSpec) -> list[str]:
    """The file's column names, read without its rows."""
    if file_kind(Path(spec.path)) == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(spec.path).schema_arrow.names)
    return [str(c) for c in _read(spec, nrows=0).columns]


def file_md5(path: str | Path) -> str:
    """The md5 of a file (as DVC's), read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _stratified(y: np.ndarray, n_train: int, g) -> tuple[list, list]:
    """Train and test rows with each class in proportion: class c keeps floor(n_c * f)
    train rows, and the rows left to reach n_train go to the classes with the largest
    remainders (the lower class id first on a tie)."""
    import torch

    n = len(y)
    counts = np.bincount(y)
    quota = counts * (n_train / n)
    take = np.floor(quota).astype(np.int64)
    extra = n_train - int(take.sum())
    order = sorted(range(len(counts)), key=lambda c: (-(quota[c] - take[c]), c))
    for c in order[:extra]:
        take[c] += 1
    train, test = [], []
    for c, k in enumerate(take.tolist()):
        rows = torch.from_numpy(np.flatnonzero(y == c))
        rows = rows[torch.randperm(len(rows), generator=g)]
        train.append(rows[:k])
        test.append(rows[k:])
    return train, test


def split_draw(table: Table, spec: FileSpec, draw: int = 0) -> Split:
    """Draw d: a random train/test split from seed + d (stratified by class for a
    classification data set); `spec.n_train` train rows, the rest test rows."""
    import torch

    from bnmodels.experiment.data import Split

    g = torch.Generator().manual_seed(spec.seed + draw)
    x = torch.from_numpy(table.x)
    n = x.shape[0]
    if table.classes is None:
        perm = torch.randperm(n, generator=g)
        tr, te = perm[: spec.n_train], perm[spec.n_train :]
        y = torch.from_numpy(table.y).reshape(-1, 1)
        return Split(x[tr], y[tr], x[te], y[te])
    train, test = _stratified(table.y, spec.n_train, g)
    tr, te = torch.cat(train), torch.cat(test)
    # shuffle the classes together: a split's row order says nothing about the labels
    tr = tr[torch.randperm(len(tr), generator=g)]
    te = te[torch.randperm(len(te), generator=g)]
    y = torch.from_numpy(table.y)
    return Split(x[tr], y[tr], x[te], y[te], num_class=len(table.classes))
