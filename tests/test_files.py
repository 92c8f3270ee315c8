"""Data sets read from files (bnmodels/experiment/files.py, stages/read.py): every bad
file is refused with the file, the column and the first bad row named, before anything
is written; good files split into stratified, seeded draws."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from bnmodels.errors import ParamsError
from bnmodels.experiment.file_params import DataFileError
from bnmodels.experiment.files import read_table, split_draw
from bnmodels.experiment.params import validate

STAGES = Path(__file__).resolve().parents[1] / "stages"


def frame(n=40, seed=0, classes=None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {"a": rng.normal(size=n), "b": rng.normal(size=n) * 1e3, "c": rng.normal(size=n)}
    )
    df["y"] = (
        rng.normal(size=n) if classes is None else [classes[i % len(classes)] for i in range(n)]
    )
    return df


def write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path


def spec_of(raw_params, path: Path, **entry):
    """The FileSpec of a params mapping whose defaults train on the file `path`."""
    raw_params["file_datasets"] = {
        "f": {
            "file": str(path),
            "target": "y",
            "task": "regression",
            "seed": 7,
            "train_fraction": 0.75,
            **entry,
        }
    }
    raw_params["defaults"]["dataset"] = "f"
    raw_params["sweeps"] = {"s": {}}
    return validate(raw_params).datasets["f"]


def problems(raw_params, path: Path, **entry) -> str:
    """The message of reading the file: params validation's, else read_table's."""
    try:
        spec = spec_of(raw_params, path, **entry)
    except ParamsError as e:
        return str(e)
    with pytest.raises(DataFileError) as e:
        read_table(spec)
    return str(e.value)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_regression_file_reads_every_other_column_as_a_feature_in_file_order(
    raw_params, tmp_path, suffix
):
    df = frame()
    spec = spec_of(raw_params, write(df, tmp_path / f"d{suffix}"))
    table = read_table(spec)
    assert spec.rows == 40 and spec.n_train == 30
    assert table.features == ("a", "b", "c") and table.classes is None
    np.testing.assert_array_equal(table.x, df[["a", "b", "c"]].to_numpy(np.float32))
    np.testing.assert_array_equal(table.y, df["y"].to_numpy(np.float32))


def test_named_features_are_read_in_the_order_given(raw_params, tmp_path):
    df = frame()
    table = read_table(spec_of(raw_params, write(df, tmp_path / "d.csv"), features=["c", "a"]))
    assert table.features == ("c", "a")
    np.testing.assert_array_equal(table.x, df[["c", "a"]].to_numpy(np.float32))


def test_a_regression_draw_is_the_seeded_permutation_of_seed_plus_draw(raw_params, tmp_path):
    df = frame()
    spec = spec_of(raw_params, write(df, tmp_path / "d.csv"), draws=3)
    table = read_table(spec)
    for draw in range(3):
        split = split_draw(table, spec, draw)
        perm = torch.randperm(40, generator=torch.Generator().manual_seed(7 + draw))
        x = torch.tensor(df[["a", "b", "c"]].to_numpy(np.float32))
        torch.testing.assert_close(split.x_train, x[perm[:30]], rtol=0, atol=0)
        torch.testing.assert_close(split.x_test, x[perm[30:]], rtol=0, atol=0)
        assert split.y_train.shape == (30, 1) and split.num_class == 0
    a, b = split_draw(table, spec, 0), split_draw(table, spec, 1)
    assert not torch.equal(a.x_train, b.x_train)


@pytest.mark.parametrize(
    "labels, classes",
    [
        (["no", "yes", "maybe"], ("maybe", "no", "yes")),
        ([7, 3], (3, 7)),
        ([True, False], (False, True)),
    ],
)
def test_class_labels_of_any_type_become_ids_in_sorted_order(raw_params, tmp_path, labels, classes):
    df = frame(n=60, classes=labels)
    spec = spec_of(raw_params, write(df, tmp_path / "d.parquet"), task="classification")
    table = read_table(spec)
    assert table.classes == classes
    ids = {c: i for i, c in enumerate(classes)}
    assert table.y.tolist() == [ids[v] for v in df["y"].tolist()]


def test_a_classification_draw_is_stratified_and_partitions_the_rows(raw_params, tmp_path):
    # 3 classes of 50, 30 and 17 rows; train fraction 0.75 of 97 = 72 rows
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 17
    df = frame(n=97)
    df["y"] = labels
    df["a"] = np.arange(97.0)  # a row's identity
    spec = spec_of(raw_params, write(df, tmp_path / "d.csv"), task="classification", draws=4)
    table = read_table(spec)
    seen = []
    for draw in range(4):
        s = split_draw(table, spec, draw)
        assert s.num_class == 3 and s.y_train.dtype == torch.int64
        assert len(s.y_train) == 72 and len(s.y_test) == 25
        counts = torch.bincount(s.y_train, minlength=3).tolist()
        for c, n in enumerate((50, 30, 17)):  # each class in proportion, within a row
            assert abs(counts[c] - n * 72 / 97) < 1
        rows = torch.cat([s.x_train[:, 0], s.x_test[:, 0]]).long().sort().values
        assert rows.tolist() == list(range(97))  # every row once
        y_all = torch.tensor([{"a": 0, "b": 1, "c": 2}[v] for v in labels])
        assert torch.equal(y_all[s.x_train[:, 0].long()], s.y_train)
        seen.append(tuple(s.x_train[:, 0].tolist()))
    assert len(set(seen)) == 4  # the draws differ
    again = split_draw(read_table(spec), spec, 2)
    assert tuple(again.x_train[:, 0].tolist()) == seen[2]


BAD_FILES = {
    # name: (edit of the frame or a raw text, params entry changes, expected text)
    "missing target": (lambda df: df.drop(columns="y"), {}, "no column 'y' (the target)"),
    "missing feature": (lambda df: df, {"features": ["a", "zz"]}, "no column 'zz' (the feature)"),
    "non-numeric feature": (
        lambda df: df.astype({"b": object}).assign(b=lambda d: d["b"].where(d.index != 6, "abc")),
        {},
        "feature column 'b': non-numeric value 'abc' at row 7 (line 8)",
    ),
    "NaN feature": (
        lambda df: df.assign(c=lambda d: d["c"].where(d.index != 4)),
        {},
        "feature column 'c': missing value (NaN) at row 5 (line 6)",
    ),
    "inf feature": (
        lambda df: df.assign(a=lambda d: d["a"].where(d.index != 9, np.inf)),
        {},
        "feature column 'a': infinite value at row 10 (line 11)",
    ),
    "NaN target": (
        lambda df: df.assign(y=lambda d: d["y"].where(d.index != 2)),
        {},
        "target column 'y': missing value (NaN) at row 3 (line 4)",
    ),
    "constant feature": (
        lambda df: df.assign(b=2.5),
        {},
        "feature column 'b': constant (2.5 in every row)",
    ),
    "single class": (
        lambda df: df.assign(y="x"),
        {"task": "classification"},
        "target column 'y': a single class ('x') in every row",
    ),
    "missing label": (
        lambda df: df.assign(y=["p", "q"] * 20).assign(y=lambda d: d["y"].where(d.index != 11)),
        {"task": "classification"},
        "target column 'y': missing label at row 12 (line 13)",
    ),
    "fewer rows than the split needs": (
        lambda df: df.head(2),
        {},
        "file_datasets.f: the 2 rows of",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_is_refused_naming_the_file_the_column_and_the_first_bad_row(
    raw_params, tmp_path, case
):
    edit, entry, expected = BAD_FILES[case]
    path = write(edit(frame()), tmp_path / "d.csv")
    message = problems(raw_params, path, **entry)
    assert expected in message
    assert str(path) in message


def test_every_problem_of_a_file_is_reported_at_once(raw_params, tmp_path):
    df = frame().assign(b=1.0).assign(c=lambda d: d["c"].where(d.index != 3))
    message = problems(raw_params, write(df, tmp_path / "d.csv"))
    assert (
        "2 problems" in message and "'b': constant" in message and "'c': missing value" in message
    )


def read_stage():
    spec = importlib.util.spec_from_file_location("stage_read", STAGES / "read.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_the_read_stage_refuses_a_bad_file_and_writes_nothing(raw_params, write_params, tmp_path):
    path = write(frame().assign(c=lambda d: d["c"].where(d.index != 4)), tmp_path / "d.csv")
    spec_of(raw_params, path)  # valid params: the problem is in the rows
    params = write_params(raw_params)
    out = tmp_path / "processed"
    result = CliRunner().invoke(
        read_stage(), ["f", "--params", str(params), "--processed", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert "feature column 'c': missing value (NaN) at row 5 (line 6)" in result.output
    assert not out.exists()


def test_the_read_stage_writes_every_draw_and_normalization_and_the_class_order(
    raw_params, write_params, tmp_path
):
    from bnmodels.experiment.data import load_split

    df = frame(n=50, classes=["z", "a"])
    spec = spec_of(raw_params, write(df, tmp_path / "d.parquet"), task="classification", draws=2)
    params = write_params(raw_params)
    out = tmp_path / "processed"
    result = CliRunner().invoke(
        read_stage(), ["f", "--params", str(params), "--processed", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "class ids 0..1 = ['a', 'z']" in result.output
    assert json.loads((out / "f" / "columns.json").read_text())["classes"] == ["a", "z"]
    names = sorted(p.name for p in (out / "f").glob("*.pt"))
    assert names == sorted(
        f"{m}{d}.pt" for m in ("none", "zscore", "minmax") for d in ("", ".draw1")
    )
    z = load_split(out / "f" / "zscore.draw1.pt")
    raw = split_draw(read_table(spec), spec, 1)
    mean, std = raw.x_train.mean(0), raw.x_train.std(0)  # SPEC 3: train-row statistics
    torch.testing.assert_close(z.x_test, (raw.x_test - mean) / std)
    assert torch.equal(z.y_train, raw.y_train)
