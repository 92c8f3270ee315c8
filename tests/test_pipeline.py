"""End to end: `dvc repro` on a tiny params file in a temporary git repository."""

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # dvc repro: not in make test-fast

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

PARAMS = """\
datasets:
  tiny: {num_examples: 60, w: [2, -1], bias: false, delta: 0.01, deg: 2, seed: 420,
         train_fraction: 0.7}
file_datasets: {}
defaults: {dataset: tiny, normalization: none, activation: sigmoid, bn: none, depth: 1,
           width: 4, init: default, momentum: 0.1, batch_size: 10, lr: 0.03, epochs: 3,
           seed: 24}
sweeps:
  alpha: {bn: [none, pre], seed: [24, 25]}
  beta: {activation: [relu, tanh], normalization: zscore, seed: [24, 25]}
  wild: {lr: [0.03, 10000.0]}
  slow: {batch_size: 2, epochs: 150, bn: [none, pre, post], seed: [1, 2, 3, 4]}
claims:
  bn_helps_alpha: {says: BN lowers the error, sweep: alpha, compare: {bn: pre},
                   against: {bn: none}, metric: final_test_mse, expect: lower}
"""


def sh(cmd: list[str], cwd: Path, check=True, **env) -> subprocess.CompletedProcess:
    e = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    e.pop("MLFLOW_TRACKING_URI", None)
    for k, v in env.items():
        e[k] = v
    p = subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, text=True)
    if check and p.returncode:
        raise AssertionError(f"{cmd} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def digest(folder: Path) -> dict[str, str]:
    return {
        str(f.relative_to(folder)): hashlib.md5(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A fresh repository with the project's pipeline and a tiny params.yaml, reproduced."""
    d = tmp_path_factory.mktemp("repo")
    for name in ("bnmodels", "stages"):
        shutil.copytree(ROOT / name, d / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "registry.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, d / name)
    (d / "params.yaml").write_text(PARAMS)
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
            "empty",
        ],
        d,
    )
    sh(["dvc", "init", "-q"], d)
    sh(["dvc", "config", "core.analytics", "false"], d)
    sh(["dvc", "repro"], d)
    return d


def test_every_configuration_has_its_rows_and_its_mlflow_run(repo):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    for sweep, n in (("alpha", 4), ("beta", 4)):
        runs = pd.read_csv(repo / "runs" / sweep / "runs.csv")
        history = pd.read_csv(repo / "runs" / sweep / "history.csv")
        assert len(runs) == n and runs["run_key"].is_unique
        assert len(history) == n * 3
        assert set(history["run_key"]) == set(runs["run_key"])
        for row in runs.itertuples():
            run = client.get_run(row.mlflow_run_id)
            assert run.data.params["seed"] == str(row.seed)
            assert run.data.params["activation"] == row.activation
            assert run.data.tags.get("mlflow.parentRunId")
            steps = client.get_metric_history(row.mlflow_run_id, "test_mse")
            assert sorted(m.step for m in steps) == [1, 2, 3]
            assert steps[-1].value == pytest.approx(row.final_test_mse, rel=1e-6)


def test_a_logged_model_loads_and_reproduces_its_final_test_mse(repo):
    import torch

    from bnmodels.experiment.data import load_split
    from bnmodels.tracking.sweep_run import load_run_model

    runs = pd.read_csv(repo / "runs" / "beta" / "runs.csv")
    row = runs.iloc[0]
    model = load_run_model(row.mlflow_run_id, f"sqlite:///{repo / 'mlflow.db'}")
    split = load_split(repo / "data" / "processed" / "tiny" / f"{row.normalization}.pt")
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(model(split.x_test), split.y_test).item()
    assert mse == pytest.approx(row.final_test_mse, rel=1e-6)


def test_each_sweep_execution_has_a_parent_run_with_the_sweeps_tables(repo):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    run_id = pd.read_csv(repo / "runs" / "alpha" / "runs.csv")["mlflow_run_id"].iloc[0]
    parent = client.get_run(client.get_run(run_id).data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep"] == "alpha"
    assert parent.data.tags["dvc_stage"] == "train@alpha"
    tables = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"history.csv", "diagnostics.json"} <= tables, tables


def test_each_sweep_links_to_its_landing_view_and_runs_log_their_plans_data(repo):
    import json

    import mlflow

    from bnmodels.tracking.ui_view import read_view_tag

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    md5 = json.loads((repo / "data" / "plans" / "beta.json").read_text())["data_md5"]
    runs = pd.read_csv(repo / "runs" / "beta" / "runs.csv")
    for run_id in runs["mlflow_run_id"]:
        inputs = client.get_run(run_id).inputs.dataset_inputs
        got = sorted((d.dataset.name, d.dataset.digest, d.tags[0].value) for d in inputs)
        recipe = next(d.dataset for d in inputs if d.dataset.name == "tiny")
        assert got == [
            ("tiny", recipe.digest, "source"),
            ("tiny/zscore/test", md5["tiny/zscore"], "test"),
            ("tiny/zscore/train", md5["tiny/zscore"], "train"),
        ]
        # a generated data set's source: its generator and params, digested
        assert recipe.source_type == "code"
        source = json.loads(recipe.source)
        assert source["params"]["num_examples"] == 60
        assert recipe.digest == hashlib.md5(recipe.source.encode()).hexdigest()
    parent = client.get_run(runs["mlflow_run_id"].iloc[0]).data.tags["mlflow.parentRunId"]
    exp = client.get_experiment_by_name("bnmodels/beta")
    view = read_view_tag(exp.tags["mlflow.sharedViewState.compare"])
    assert view["searchFilter"] == f"tags.`mlflow.parentRunId` = '{parent}'"
    assert [k["groupByData"] for k in view["groupBy"]["groupByKeys"]] == ["activation"]
    links = sh([str(BIN / "bnmodels"), "links"], repo).stdout
    line = next(x for x in links.splitlines() if x.startswith("bnmodels/beta "))
    assert line.endswith(
        f"/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
        "&viewStateShareKey=compare&compareRunsMode=CHART"
    )


def test_reports_are_written(repo):
    assert (repo / "reports" / "report.md").read_text().count("alpha") >= 1
    assert "bn_helps_alpha" in (repo / "reports" / "claims.csv").read_text()
    assert (repo / "reports" / "metrics.json").exists()
    assert (repo / "reports" / "summary.csv").exists()


def test_editing_or_adding_a_claim_reruns_the_aggregation_only(repo):
    runs = digest(repo / "runs")
    plans = digest(repo / "data" / "plans")
    params = (repo / "params.yaml").read_text()
    edited = params.replace("expect: lower}", "expect: higher}") + (
        "  relu_vs_tanh: {says: relu beats tanh, sweep: beta, compare: {activation: relu},\n"
        "                 against: {activation: tanh}, metric: last2_test_mse, expect: same,\n"
        "                 margin: 0.5}\n"
    )
    (repo / "params.yaml").write_text(edited)
    try:
        out = sh(["dvc", "repro"], repo).stdout
    finally:
        (repo / "params.yaml").write_text(params)
    assert "Running stage 'aggregate'" in out and "Running stage 'train@" not in out
    assert digest(repo / "runs") == runs and digest(repo / "data" / "plans") == plans
    claims = pd.read_csv(repo / "reports" / "claims.csv").set_index("id")
    assert list(claims.index) == ["bn_helps_alpha", "relu_vs_tanh"]
    assert claims.loc["bn_helps_alpha", "expect"] == "higher"
    words = {"supported", "not supported", "inconclusive", "cannot be decided with these seeds"}
    words |= {"consistent", "inconsistent", "undecided"}  # exploratory readings
    assert set(claims["verdict"]) <= words
    sh(["dvc", "repro"], repo)  # back to the original claims: the aggregation only, again


def test_a_bad_claim_stops_before_training_and_changes_nothing(repo):
    good = (repo / "params.yaml").read_text()
    before = {d: digest(repo / d) for d in ("runs", "reports")}
    bad = good.replace("sweep: alpha, compare: {bn: pre}", "sweep: alpha, compare: {bn: post}")
    (repo / "params.yaml").write_text(bad.replace("final_test_mse", "final_test_mae"))
    try:
        p = sh(["dvc", "repro"], repo, check=False)
    finally:
        (repo / "params.yaml").write_text(good)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "Traceback" not in out
    for line in (
        "params.yaml: claims.bn_helps_alpha.compare.bn: 'post' is not allowed; expected one of "
        "none, pre (the values of sweep alpha)",
        "params.yaml: claims.bn_helps_alpha.metric: 'final_test_mae' is not allowed; expected",
    ):
        assert line in out, out
    assert "Running stage 'train@" not in out
    assert {d: digest(repo / d) for d in ("runs", "reports")} == before


def test_second_repro_does_nothing_and_editing_one_sweep_retrains_only_it(repo):
    before = {s: digest(repo / "runs" / s) for s in ("alpha", "beta")}
    out = sh(["dvc", "repro"], repo).stdout
    assert "Running stage" not in out
    assert {s: digest(repo / "runs" / s) for s in ("alpha", "beta")} == before

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    alpha_ids = set(pd.read_csv(repo / "runs" / "alpha" / "runs.csv")["mlflow_run_id"])
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(
        params.replace("zscore, seed: [24, 25]", "zscore, seed: [24, 26]")
    )
    out = sh(["dvc", "repro"], repo).stdout
    assert "Running stage 'train@beta'" in out
    assert "Running stage 'train@alpha'" not in out
    assert digest(repo / "runs" / "alpha") == before["alpha"]
    beta = pd.read_csv(repo / "runs" / "beta" / "runs.csv")
    assert sorted(set(beta["seed"])) == [24, 26]
    for run_id in alpha_ids:  # alpha's MLflow runs are untouched
        assert client.get_run(run_id).info.status == "FINISHED"


def run_statuses(repo: Path, sweep: str) -> list[tuple[str, str]]:
    """(status, parent run id or '') of every MLflow run of a sweep, oldest first (runs
    deleted when a rerun resumed their parent excluded)."""
    with sqlite3.connect(repo / "mlflow.db") as db:
        return db.execute(
            "SELECT r.status, COALESCE(t.value, '') FROM runs r"
            " JOIN experiments e ON r.experiment_id = e.experiment_id"
            " LEFT JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'mlflow.parentRunId'"
            " WHERE e.name = ? AND r.lifecycle_stage = 'active' ORDER BY r.start_time",
            (f"bnmodels/{sweep}",),
        ).fetchall()


def test_a_diverging_run_is_marked_and_the_sweep_finishes(repo):
    import mlflow

    runs = pd.read_csv(repo / "runs" / "wild" / "runs.csv").set_index("lr")
    assert not runs.loc[0.03, "diverged"] and runs.loc[10000.0, "diverged"]
    assert pd.isna(runs.loc[10000.0, "final_test_mse"])
    history = pd.read_csv(repo / "runs" / "wild" / "history.csv")
    wild = history[history["run_key"] == runs.loc[10000.0, "run_key"]]
    assert wild["test_mse"].isna().all()
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    run = client.get_run(runs.loc[10000.0, "mlflow_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["diverged"] == "true"
    assert client.get_run(runs.loc[0.03, "mlflow_run_id"]).info.status == "FINISHED"
    assert "diverged" in (repo / "reports" / "report.md").read_text()


def test_bad_params_stop_before_training_with_one_line_each_and_change_nothing(repo):
    good = (repo / "params.yaml").read_text()
    before = {d: digest(repo / d) for d in ("runs", "reports")}
    n_runs = len(run_statuses(repo, "alpha"))
    bad = good.replace("alpha: {bn: [none, pre]", "alpha: {bn: [none, prre], lr: 0")
    bad = bad.replace("wild: {lr: [0.03, 10000.0]}", "wild: {lr: [0.03, 10000.0], depht: 2}")
    (repo / "params.yaml").write_text(bad)
    try:
        p = sh(["dvc", "repro"], repo, check=False)
    finally:
        (repo / "params.yaml").write_text(good)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "Traceback" not in out
    for line in (
        "params.yaml: sweeps.alpha.bn[1]: 'prre' is not allowed; expected one of none, pre, post",
        "params.yaml: sweeps.alpha.lr: 0 is not allowed; expected a finite number > 0",
        "params.yaml: sweeps.wild.depht: unknown key; expected one of dataset,",
    ):
        assert line in out, out
    assert "Running stage 'train@" not in out
    assert {d: digest(repo / d) for d in ("runs", "reports")} == before
    assert len(run_statuses(repo, "alpha")) == n_runs


def test_a_tracking_server_that_is_down_fails_fast_naming_it_and_changes_nothing(repo):
    import socket

    with socket.socket() as s:  # a free port: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    before = digest(repo / "runs" / "alpha")
    t = time.monotonic()
    p = sh(
        ["dvc", "repro", "-f", "-s", "train@alpha"],
        repo,
        check=False,
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}",
    )
    assert p.returncode != 0
    assert f"http://127.0.0.1:{port}" in p.stdout + p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    assert time.monotonic() - t < 60
    assert digest(repo / "runs" / "alpha") == before


# Started by every Python process of the interrupted `dvc repro` (PYTHONPATH): in the
# train stage alone, it replaces training with a pause that the test interrupts, so the
# interruption lands mid-stage, after the parent run opened and before any child is
# logged, however fast or loaded the machine. (Polling the store for the parent run and
# then sending Ctrl-C raced a fast stage: it could finish first, and the test failed.)
PAUSE_IN_TRAINING = """\
import os, sys, time
if sys.argv and sys.argv[0].endswith("train.py") and os.environ.get("PAUSE_MARKER"):
    import bnmodels.training.sweep

    def paused(*args, **kwargs):
        open(os.environ["PAUSE_MARKER"], "w").close()
        time.sleep(600)  # the test's Ctrl-C interrupts this

    bnmodels.training.sweep.train_sweep = paused
"""


def test_ctrl_c_during_training_keeps_old_outputs_marks_runs_killed_and_reruns_cleanly(
    repo, tmp_path
):
    before = digest(repo / "runs" / "slow")
    n_before = len(run_statuses(repo, "slow"))
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(PAUSE_IN_TRAINING)
    marker = tmp_path / "training-started"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(hook),
        "PAUSE_MARKER": str(marker),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    params = (repo / "params.yaml").read_text()  # the sweep is out of date, then interrupted
    (repo / "params.yaml").write_text(params.replace("seed: [1, 2, 3, 4]", "seed: [1, 2, 3, 5]"))
    proc = subprocess.Popen(
        ["dvc", "repro"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:  # wait until the train stage is training (its parent run is open)
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "never started"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert digest(repo / "runs" / "slow") == before  # the previous results, intact
    new = run_statuses(repo, "slow")[n_before:]
    assert new and all(status == "KILLED" for status, _ in new), new

    out = sh(["dvc", "repro"], repo).stdout  # retrains the sweep, resumes its parent run
    assert "Running stage 'train@slow'" in out
    runs = pd.read_csv(repo / "runs" / "slow" / "runs.csv")
    assert len(runs) == 12 and runs["mlflow_run_id"].is_unique and 5 in set(runs["seed"])
    latest = run_statuses(repo, "slow")[n_before:]
    parents = [s for s, parent in latest if not parent]
    children = [s for s, parent in latest if parent]
    assert parents == ["FINISHED"] and children == ["FINISHED"] * 12
