"""MLflow tracking: what a logged sweep looks like in the store, and how it fails.

One SQLite store per module (creating a store's schema takes ~2 s); every test logs its
own sweep, i.e. its own experiment, into it.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from mlflow import MlflowClient

from bnmodels import tracking
from bnmodels.config import CONFIG_KEYS, DatasetSpec, RunConfig
from bnmodels.data import generate
from bnmodels.tracking import TrackingError
from bnmodels.train import train_reference

EPOCHS = 3
SPEC = DatasetSpec(name="tiny", num_examples=100, w=(2.0, -1.0), bias=False, delta=0.01,
                   deg=2, seed=7, train_fraction=0.7, feature_scale=(1.0, 1.0),
                   feature_shift=(0.0, 0.0))  # fmt: skip
IN_FEATURES = {"tiny": 2}
TAGS = {"mlflow.source.git.commit": "0123abc", "dvc_stage": "train@tiny", "params_hash": "9f"}


@pytest.fixture(scope="module")
def split():
    return generate(SPEC)


@pytest.fixture(scope="module")
def results(split):
    """Three real runs (sigmoid has no dead_fraction; relu has), and a copy of the first
    that diverged in its last epoch: its epoch-3 values are NaN."""
    base = RunConfig("tiny", "none", "sigmoid", "pre", 1, 4, "default", 0.1, 10, 0.03,
                     EPOCHS, 0)  # fmt: skip
    runs = [
        train_reference(base, split),
        train_reference(replace(base, activation="relu", bn="post", depth=2, seed=1), split),
        train_reference(replace(base, activation="tanh", bn="none", lr=0.1, seed=2), split),
    ]
    first = runs[0]
    history = {
        k: np.where(np.arange(EPOCHS) < EPOCHS - 1, v, np.nan) for k, v in first.history.items()
    }
    diverged = replace(first, config=replace(first.config, seed=3), history=history, diverged=True)
    return [*runs, diverged]


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db"


@pytest.fixture(scope="module")
def logged(uri, results):
    fig = Figure()
    fig.subplots().plot([1, 2, 3])
    parent, run_ids = tracking.log_sweep(
        "tiny", results, uri=uri, in_features=IN_FEATURES, tags=TAGS, figures={"curves": fig}
    )
    return parent, run_ids


def _runs(uri, sweep):
    """Every run of a sweep's experiment: {run name: Run}."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(tracking.experiment_name(sweep))
    return {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}


def test_every_run_is_logged_with_its_configuration_and_one_metric_per_epoch(uri, results, logged):
    client = MlflowClient(uri)
    _, run_ids = logged
    assert set(run_ids) == {r.config.run_key for r in results}
    for r in results[:3]:
        run = client.get_run(run_ids[r.config.run_key])
        assert run.info.run_name == r.config.run_key
        assert run.data.params == {k: str(v) for k, v in r.config.as_dict().items()}
        assert set(run.data.params) == set(CONFIG_KEYS)
        assert {k: run.data.tags[k] for k in TAGS} == TAGS
        assert run.data.tags["sweep"] == "tiny" and run.data.tags["run_key"] == r.config.run_key
        for col, values in r.history.items():
            if np.isnan(values).all():  # sigmoid/tanh runs have no dead units to count
                assert col not in run.data.metrics
                continue
            hist = client.get_metric_history(run.info.run_id, col)
            assert [m.step for m in hist] == list(range(1, EPOCHS + 1))
            assert [m.value for m in hist] == pytest.approx(values.tolist(), rel=1e-12)


def test_children_point_to_one_finished_parent_that_holds_the_sweep(uri, results, logged):
    client = MlflowClient(uri)
    parent_id, run_ids = logged
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert {k: parent.data.tags[k] for k in TAGS} == TAGS
    assert parent.data.params["varying"] == "activation,bn,depth,lr,seed"
    assert parent.data.params["depth"] == "1,2"
    assert "figures/curves.png" in [a.path for a in client.list_artifacts(parent_id, "figures")]
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    assert {c.info.run_id for c in children} == set(run_ids.values())


def test_experiment_opens_in_the_ml_view_and_keeps_artifacts_next_to_the_store(uri, logged):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("bnmodels/tiny")
    assert exp.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    store_dir = tracking.sqlite_path(uri).parent
    for run_id in logged[1].values():
        artifacts = Path(urlparse(client.get_run(run_id).info.artifact_uri).path)
        assert artifacts.is_relative_to(store_dir / "mlartifacts" / "tiny")


def test_logged_model_reproduces_the_final_test_mse(uri, split, results, logged, monkeypatch):
    import mlflow.pytorch
    from mlflow.tracking._tracking_service import utils

    client = MlflowClient(uri)
    # runs:/ URIs resolve against the global tracking URI (set_tracking_uri beats the env)
    monkeypatch.setattr(utils, "_tracking_uri", uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    for r in results[:3]:
        run_id = logged[1][r.config.run_key]
        model_uri = client.get_run(run_id).data.tags["model_uri"]
        assert model_uri == f"runs:/{run_id}/model"
        for model in (mlflow.pytorch.load_model(model_uri), tracking.load_run_model(run_id, uri)):
            model.eval()
            with torch.no_grad():
                mse = torch.nn.functional.mse_loss(model(split.x_test), split.y_test).item()
            assert mse == pytest.approx(r.final_test_mse, rel=1e-6)
        assert sorted(model.state_dict()) == sorted(r.state_dict)


def test_nan_epochs_are_absent_and_a_diverged_run_is_tagged_and_failed(uri, results, logged):
    client = MlflowClient(uri)
    diverged = client.get_run(logged[1][results[3].config.run_key])
    assert diverged.data.tags["diverged"] == "true"
    assert diverged.info.status == "FAILED"
    steps = [m.step for m in client.get_metric_history(diverged.info.run_id, "test_mse")]
    assert steps == list(range(1, EPOCHS))
    for r in results[:3]:
        run = client.get_run(logged[1][r.config.run_key])
        assert (run.data.tags["diverged"], run.info.status) == ("false", "FINISHED")


def test_diagnostics_are_logged_as_json(uri, results, logged):
    import json

    client = MlflowClient(uri)
    r = results[1]
    local = client.download_artifacts(logged[1][r.config.run_key], tracking.DIAGNOSTICS_FILE)
    assert json.loads(Path(local).read_text()) == r.final


def _log_in_process(uri, sweep, results, barrier):
    barrier.wait()  # all three create the fresh store at the same moment
    tracking.log_sweep(sweep, results, uri=uri, in_features=IN_FEATURES, tags=TAGS)


def test_three_processes_creating_a_fresh_store_at_once_lose_no_runs(tmp_path, results):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    barrier = ctx.Barrier(3)
    procs = [
        ctx.Process(target=_log_in_process, args=(uri, f"p{i}", results, barrier)) for i in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    for i in range(3):
        runs = _runs(uri, f"p{i}")
        assert len(runs) == len(results) + 1
        assert {r.config.run_key for r in results} < set(runs)
    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_is_down_gives_a_tracking_error_naming_it_within_seconds(results):
    uri = f"http://127.0.0.1:{_free_port()}"
    start = time.monotonic()
    with pytest.raises(TrackingError, match=f"{uri}.*not reachable"):
        tracking.check_reachable(uri)
    assert time.monotonic() - start < 10
    with pytest.raises(TrackingError, match=uri):
        tracking.log_sweep("down", results, uri=uri, in_features=IN_FEATURES, tags=TAGS)


def test_deleted_model_artifacts_give_a_tracking_error(uri, results):
    _, run_ids = tracking.log_sweep("deleted", results[:1], uri=uri, in_features=IN_FEATURES,
                                    tags=TAGS)  # fmt: skip
    run_id = run_ids[results[0].config.run_key]
    artifacts = urlparse(MlflowClient(uri).get_run(run_id).info.artifact_uri).path
    shutil.rmtree(Path(artifacts) / "model")
    with pytest.raises(TrackingError, match=f"run {run_id} is missing"):
        tracking.load_run_model(run_id, uri)
    with pytest.raises(TrackingError, match="not found"):
        tracking.load_run_model("0" * 32, uri)


def _interrupt_after(n, exc):
    calls = []

    def progress(k):
        calls.append(k)
        if len(calls) == n:
            raise exc

    return progress


def test_ctrl_c_marks_the_parent_killed_and_keeps_finished_children(uri, results):
    with pytest.raises(KeyboardInterrupt):
        tracking.log_sweep("ctrlc", results[:3], uri=uri, in_features=IN_FEATURES, tags=TAGS,
                           progress=_interrupt_after(1, KeyboardInterrupt()))  # fmt: skip
    runs = _runs(uri, "ctrlc")
    assert runs["ctrlc"].info.status == "KILLED"
    assert runs[results[0].config.run_key].info.status == "FINISHED"
    assert len(runs) == 2  # the interrupted sweep logged nothing after it


def test_an_interrupted_child_is_marked_killed(uri, results, monkeypatch):
    def interrupted(self, run_id, local_dir, artifact_path=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(MlflowClient, "log_artifacts", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tracking.log_sweep("child", results[:2], uri=uri, in_features=IN_FEATURES, tags=TAGS)
    runs = _runs(uri, "child")
    assert runs["child"].info.status == "KILLED"
    assert runs[results[0].config.run_key].info.status == "KILLED"


def test_sigterm_marks_runs_killed(uri, results):
    def sigterm(_):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs here

    with pytest.raises(SystemExit) as exit_info, tracking.sigterm_as_exit():
        tracking.log_sweep("sigterm", results[:2], uri=uri, in_features=IN_FEATURES, tags=TAGS,
                           progress=sigterm)  # fmt: skip
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    assert _runs(uri, "sigterm")["sigterm"].info.status == "KILLED"


def test_an_error_marks_the_parent_failed(uri, results):
    with pytest.raises(RuntimeError, match="boom"):
        tracking.log_sweep("error", results[:2], uri=uri, in_features=IN_FEATURES, tags=TAGS,
                           progress=_interrupt_after(1, RuntimeError("boom")))  # fmt: skip
    assert _runs(uri, "error")["error"].info.status == "FAILED"


def test_a_parent_opened_before_training_records_an_interrupted_training(uri, results):
    with pytest.raises(KeyboardInterrupt):
        with tracking.open_sweep_run("training", uri=uri, tags=TAGS) as run:
            run.log_results(results[:1], IN_FEATURES)
            raise KeyboardInterrupt  # while training the next group
    runs = _runs(uri, "training")
    assert runs["training"].info.status == "KILLED"
    assert runs[results[0].config.run_key].info.status == "FINISHED"


def test_default_tracking_uri_is_the_env_then_the_dvc_root_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking.default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))
    assert tracking.default_tracking_uri(tmp_path / "copy") == (
        f"sqlite:///{tmp_path}/repo/mlflow.db"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking.default_tracking_uri(tmp_path) == "http://mlflow:5000"


def test_experiment_url_opens_the_runs_table_of_the_ml_view():
    ml = "runs?workflowType=machine_learning"
    assert tracking.experiment_url("sqlite:////r/mlflow.db", "4") == (
        f"http://127.0.0.1:5000/#/experiments/4/{ml}"
    )
    assert tracking.experiment_url("https://u:pw@mlflow.example/", "4") == (
        f"https://mlflow.example/#/experiments/4/{ml}"
    )


def test_varying_params_name_the_keys_that_vary(results):
    params = tracking.varying_params([r.config for r in results])
    assert params["varying"] == "activation,bn,depth,lr,seed"
    assert params["activation"] == "sigmoid,relu,tanh" and "dataset" not in params
    assert tracking.varying_params([results[0].config])["varying"] == "-"


def test_importing_tracking_does_not_import_mlflow_or_torch():
    code = "import sys, bnmodels.tracking; print('mlflow' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_forked_logger_logs_the_same_runs_as_logging_in_process(tmp_path, results):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking.ensure_store(uri)
    with tracking.open_sweep_run("forked", uri=uri, tags=TAGS) as parent:
        with tracking.ForkedLogger(parent, IN_FEATURES) as logger:
            logger.submit(results[:2])
            logger.submit(results[2:])
            run_ids = logger.close()
    client = MlflowClient(uri)
    assert set(run_ids) == {r.config.run_key for r in results}
    for r in results:
        run = client.get_run(run_ids[r.config.run_key])
        assert run.data.tags["mlflow.parentRunId"] == parent.run_id
        assert run.info.status == ("FAILED" if r.diverged else "FINISHED")
        assert run.data.metrics["train_mse"] == pytest.approx(
            float(r.history["train_mse"][~np.isnan(r.history["train_mse"])][-1]), rel=1e-12
        )
    model = tracking.load_run_model(run_ids[results[0].config.run_key], uri)
    for k, v in results[0].state_dict.items():
        assert torch.equal(model.state_dict()[k], v)


HANG_SCRIPT = """
import sys
from bnmodels import tracking
from mlflow import MlflowClient
import test_tracking as T
uri = sys.argv[1]
tracking.ensure_store(uri)
results = T.results.__wrapped__(T.split.__wrapped__()) * 40  # ~1 MB of queued chunks
bogus = tracking.SweepRun(MlflowClient(uri), "s", "999999", "0" * 32, {})
with tracking.ForkedLogger(bogus, T.IN_FEATURES) as logger:
    for i in range(0, len(results), 32):
        logger.submit(results[i : i + 32])
    logger.close()
"""


def test_a_failing_logger_raises_and_the_process_still_exits(tmp_path):
    """The worker fails on its first chunk while ~1 MB of chunks wait in the queue: the
    caller must get a TrackingError and exit, not hang on the queue's feeder thread."""
    p = subprocess.run([sys.executable, "-c", HANG_SCRIPT, f"sqlite:///{tmp_path}/m.db"],
                       cwd=Path(__file__).parent, capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert p.returncode != 0
    assert "TrackingError" in p.stderr and "logging child runs failed" in p.stderr
