"""The file_datasets section of params.yaml (bnmodels/experiment/file_params.py): entries
checked with every problem at once; the file opened only to count its rows, so that a
missing file, a file that is not what its name says, or too few rows stop validation."""

from __future__ import annotations

import pytest
from test_files import frame, spec_of, write

from bnmodels.errors import ParamsError
from bnmodels.experiment.params import validate


def test_a_batch_larger_than_the_train_rows_is_a_params_problem(raw_params, tmp_path):
    path = write(frame(n=12), tmp_path / "d.csv")  # 9 train rows
    raw_params["defaults"]["batch_size"] = 10
    with pytest.raises(ParamsError, match="10 is larger than the 9 train rows of data set 'f'"):
        spec_of(raw_params, path)


def test_a_missing_file_is_a_params_problem_naming_it(raw_params, tmp_path):
    with pytest.raises(ParamsError, match=r"file_datasets\.f\.file: .*absent\.csv: file not found"):
        spec_of(raw_params, tmp_path / "absent.csv")


@pytest.mark.parametrize("written, named", [(".parquet", ".csv"), (".csv", ".parquet")])
def test_a_file_that_is_not_what_its_extension_says_is_refused(
    raw_params, tmp_path, written, named
):
    src = write(frame(), tmp_path / f"real{written}")
    path = tmp_path / f"d{named}"
    path.write_bytes(src.read_bytes())
    with pytest.raises(ParamsError, match="is not a (CSV|Parquet) file"):
        spec_of(raw_params, path)


def test_a_csv_of_binary_data_is_refused(raw_params, tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"a,b,y\n1,2,\x00\x01\x02\n")
    with pytest.raises(ParamsError, match="is not a CSV file: it holds binary data"):
        spec_of(raw_params, path)


def test_params_entries_are_checked_with_every_problem_at_once(raw_params, tmp_path):
    path = write(frame(), tmp_path / "d.csv")
    raw_params["file_datasets"] = {
        "f": {
            "file": str(path.with_suffix(".xlsx")),
            "task": "both",
            "seed": -1,
            "train_fraction": 1.5,
            "features": ["a", "a"],
            "extra": 1,
        }
    }
    raw_params["sweeps"] = {"s": {}}
    with pytest.raises(ParamsError) as e:
        validate(raw_params)
    text = str(e.value)
    for part in (
        "file_datasets.f.extra: unknown key",
        "file_datasets.f.target: missing key",
        "a path ending in .csv or .parquet",
        "file_datasets.f.task",
        "file_datasets.f.seed",
        "file_datasets.f.train_fraction",
        "file_datasets.f.features",
    ):
        assert part in text


def test_a_file_data_set_may_not_reuse_a_generated_data_sets_name(raw_params, tmp_path):
    raw_params["file_datasets"] = {
        "quad2": {
            "file": str(write(frame(), tmp_path / "d.csv")),
            "target": "y",
            "task": "regression",
            "seed": 1,
            "train_fraction": 0.5,
        }
    }
    with pytest.raises(
        ParamsError, match="file_datasets.quad2: a data set of this name is under datasets too"
    ):
        validate(raw_params)


def test_datasets_may_be_empty_when_every_data_set_is_read_from_a_file(raw_params, tmp_path):
    raw_params["datasets"] = {}
    spec = spec_of(raw_params, write(frame(), tmp_path / "d.csv"))
    assert spec.rows == 40
    raw_params["file_datasets"] = {}
    with pytest.raises(ParamsError, match="datasets: {} is not allowed"):
        validate(raw_params)


def test_rows_are_counted_as_pandas_reads_them(raw_params, tmp_path):
    # a quoted label holding a line break, blank lines: the standard library's count
    # (no pandas in params validation) agrees with pandas', which the read stage uses
    import pandas as pd

    path = tmp_path / "d.csv"
    path.write_text('a,b,y\n1,2,"x\ny"\n\n3,4,z\n5,6,z\n\n7,8,"x\ny"\n')
    raw_params["defaults"]["batch_size"] = 2
    spec = spec_of(raw_params, path, task="classification", train_fraction=0.5)
    assert spec.rows == len(pd.read_csv(path)) == 4
