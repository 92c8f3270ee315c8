"""File data sets through `dvc repro` (stages/read.py in the pipeline): a CSV and a Parquet
data set each train a sweep with a claim judged on it; editing one file reruns exactly
what it feeds; a bad file stops the pipeline before any training or logging."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_pipeline import ROOT, digest, sh

pytestmark = pytest.mark.slow  # dvc repro: not in make test-fast

PARAMS = """\
datasets:
  tiny: {num_examples: 60, w: [2, -1], bias: false, delta: 0.01, deg: 2, seed: 420,
         train_fraction: 0.7}
file_datasets:
  reg: {file: tables/reg.csv, target: y, task: regression, seed: 3, draws: 2,
        train_fraction: 0.7}
  cla: {file: tables/cla.parquet, target: label, task: classification, seed: 3, draws: 2,
        train_fraction: 0.7}
defaults: {dataset: tiny, normalization: zscore, activation: relu, bn: none, depth: 1,
           width: 4, init: default, momentum: 0.1, batch_size: 10, lr: 0.03, epochs: 3,
           seed: 24}
sweeps:
  on_csv: {dataset: reg, bn: [none, pre], seed: [1, 2, 3, 4]}
  on_parquet: {dataset: cla, bn: [none, pre], seed: [1, 2, 3, 4]}
  on_tiny: {bn: [none, pre]}
claims:
  bn_on_csv: {says: BN lowers the error on the CSV data, sweep: on_csv, compare: {bn: pre},
              against: {bn: none}, metric: final_test_mse, expect: lower}
  bn_on_parquet: {says: BN raises the accuracy on the Parquet data, sweep: on_parquet,
                  compare: {bn: pre}, against: {bn: none}, metric: final_test_accuracy,
                  expect: higher}
"""


def tables(folder: Path) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(80, 3)) * [1.0, 100.0, 0.01] + [0.0, 500.0, 1.0]
    reg = pd.DataFrame(x, columns=["a", "b", "c"]).assign(y=x[:, 0] ** 2 - x[:, 2] * 50)
    cla = pd.DataFrame(x, columns=["a", "b", "c"])
    cla["label"] = np.where(x[:, 0] > 0, "up", "down")
    folder.mkdir()
    reg.to_csv(folder / "reg.csv", index=False)
    cla.to_parquet(folder / "cla.parquet", index=False)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("filerepo")
    for name in ("bnmodels", "stages"):
        shutil.copytree(ROOT / name, d / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "registry.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, d / name)
    (d / "params.yaml").write_text(PARAMS)
    tables(d / "tables")
    sh(["git", "init", "-q"], d)
    sh(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "e",
        ],
        d,
    )
    sh(["dvc", "init", "-q"], d)
    sh(["dvc", "config", "core.analytics", "false"], d)
    sh(["dvc", "repro"], d)
    return d


def test_a_csv_and_a_parquet_data_set_train_their_sweeps_and_their_claims_are_judged(repo):
    import mlflow

    for sweep, dataset in (("on_csv", "reg"), ("on_parquet", "cla")):
        runs = pd.read_csv(repo / "runs" / sweep / "runs.csv")
        assert len(runs) == 8 and set(runs["dataset"]) == {dataset}
        assert set(runs["draw"]) == {0, 1}  # seed mod 2: both draws
    cla = pd.read_csv(repo / "runs" / "on_parquet" / "runs.csv")
    assert cla["final_test_accuracy"].between(0, 1).all()
    claims = pd.read_csv(repo / "reports" / "claims.csv").set_index("id")
    assert set(claims.index) == {"bn_on_csv", "bn_on_parquet"}
    words = {"supported", "not supported", "inconclusive", "cannot be decided with these seeds"}
    words |= {"consistent", "inconsistent", "undecided"}  # exploratory readings
    assert set(claims["verdict"]) <= words
    # lineage: each run names the file it trained on, with the file's md5, as an input
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    run_id = cla["mlflow_run_id"].iloc[0]
    inputs = {d.dataset.name: d.dataset for d in client.get_run(run_id).inputs.dataset_inputs}
    source = inputs["cla"]
    assert source.digest == digest(repo / "tables")["cla.parquet"]
    assert "tables/cla.parquet" in source.source
    profile = json.loads(source.profile)  # what the UI shows beside it
    assert profile["rows"] == 80 and profile["classes"] == ["down", "up"]
    assert profile["features"] == ["a", "b", "c"] and profile["target"] == "label"


def test_editing_one_file_reruns_exactly_what_it_feeds(repo):
    status = sh(["dvc", "status"], repo).stdout
    assert "read@" not in status
    before = {s: digest(repo / "runs" / s) for s in ("on_csv", "on_parquet", "on_tiny")}
    path = repo / "tables" / "reg.csv"
    original = path.read_text()
    *rows, last = original.splitlines()
    path.write_text("\n".join([*rows, last.rsplit(",", 1)[0] + ",123.5"]) + "\n")  # a new target
    try:
        status = sh(["dvc", "status"], repo).stdout
        assert "read@reg" in status and "tables/reg.csv" in status
        assert "read@cla" not in status and "generate@" not in status
        out = sh(["dvc", "repro"], repo).stdout
        assert "Running stage 'read@reg'" in out
        assert "Running stage 'train@on_csv'" in out, out
        for other in ("read@cla", "generate@tiny", "train@on_parquet", "train@on_tiny"):
            assert f"Running stage '{other}'" not in out
        assert digest(repo / "runs" / "on_csv") != before["on_csv"]
        for s in ("on_parquet", "on_tiny"):
            assert digest(repo / "runs" / s) == before[s]
    finally:
        path.write_text(original)
    sh(["dvc", "repro"], repo)


@pytest.mark.parametrize(
    "bad, expected",
    [
        (lambda t: t.replace("a,b,c,y", "a,b,c,target"), "no column 'y' (the target)"),
        (lambda t: t.replace("\n", "\n,,,\n", 1), "missing value (NaN) at row 1 (line 2)"),
    ],
)
def test_a_bad_file_stops_before_training_and_nothing_is_written_or_logged(repo, bad, expected):
    import sqlite3

    path = repo / "tables" / "reg.csv"
    original = path.read_text()
    runs, processed = digest(repo / "runs"), digest(repo / "data" / "processed")
    with sqlite3.connect(repo / "mlflow.db") as db:
        n_runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    path.write_text(bad(original))
    try:
        p = sh(["dvc", "repro"], repo, check=False)
    finally:
        path.write_text(original)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "Traceback" not in out
    assert expected in out and "tables/reg.csv" in out
    assert "Running stage 'train@" not in out and "Running stage 'plan'" not in out
    assert digest(repo / "runs") == runs
    assert digest(repo / "data" / "processed") == processed
    with sqlite3.connect(repo / "mlflow.db") as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == n_runs
