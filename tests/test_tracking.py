"""MLflow tracking: what a logged sweep looks like in the store, and how it fails.

One SQLite store per module (creating a store's schema takes ~2 s); every test logs its
own sweep, i.e. its own experiment, into it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
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
from configs import quad2_spec
from mlflow import MlflowClient

from bnmodels.experiment.config import CONFIG_KEYS, Execution, FileSpec, RunConfig
from bnmodels.experiment.data import generate
from bnmodels.tracking import store, sweep_run
from bnmodels.tracking.store import TrackingError
from bnmodels.tracking.train_and_log import train_and_log
from bnmodels.tracking.workers import ForkedLogger, log_workers
from bnmodels.tracking.writers import data_inputs, source_input
from bnmodels.training.reference import train_reference

EPOCHS = 3
SPEC = quad2_spec(name="tiny", num_examples=100, seed=7)
IN_FEATURES = {"tiny": 2}
MD5 = "0123456789abcdef0123456789abcdef"  # a plan's data_md5 of the processed file
INPUTS = data_inputs({"tiny/none": MD5}, "data/processed")
TAGS = {"mlflow.source.git.commit": "0123abc", "dvc_stage": "train@tiny", "params_hash": "9f"}


def log_sweep(sweep, results, *, uri, in_features=IN_FEATURES, tags=TAGS, inputs=None):
    """The train stage's own path (`train_and_log`), its training replaced by `results`;
    returns (parent run id, {run_key: child run id})."""

    def replay(runs, splits, execution, on_results, probes, workers):
        on_results(list(results))
        return list(results)

    done = train_and_log(
        sweep,
        [r.config for r in results],
        {},
        execution=Execution(workers=1),
        uri=uri,
        tags=tags,
        inputs=inputs,
        in_features=in_features,
        trainer=replay,
    )
    return done.parent_id, done.run_ids


@pytest.fixture(scope="module")
def split():
    return generate(SPEC)


@pytest.fixture(scope="module")
def results(split):
    return make_results(split)


def make_results(split):
    """Three real runs (sigmoid has no dead_fraction; relu has), and a copy of the first
    that diverged in its last epoch: its epoch-3 values are NaN."""
    base = RunConfig("tiny", "none", "sigmoid", "pre", 1, 4, "default", 0.1, 10, 0.03, EPOCHS, 0)
    runs = [
        train_reference(base, split),
        train_reference(
            replace(base, activation="relu", bn="post", norm=None, depth=2, seed=1), split
        ),
        train_reference(
            replace(base, activation="tanh", bn="none", norm=None, lr=0.1, seed=2), split
        ),
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
    return log_sweep("tiny", results, uri=uri, inputs=INPUTS)


def _runs(uri, sweep):
    """Every run of a sweep's experiment: {run name: Run}."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(store.experiment_name(sweep))
    return {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}


def test_every_run_is_logged_with_its_configuration_and_one_metric_per_epoch(uri, results, logged):
    client = MlflowClient(uri)
    _, run_ids = logged
    assert set(run_ids) == {r.config.run_key for r in results}
    for r in results[:3]:
        run = client.get_run(run_ids[r.config.run_key])
        assert run.info.run_name == r.config.run_key
        assert run.data.params == {k: str(v) for k, v in r.config.as_dict().items()}
        assert set(run.data.params) == {*CONFIG_KEYS, "norm", "norm_at"}
        assert {k: run.data.tags[k] for k in TAGS} == TAGS
        assert run.data.tags["sweep"] == "tiny" and run.data.tags["run_key"] == r.config.run_key
        for col, values in r.history.items():
            if np.isnan(values).all():  # sigmoid/tanh runs have no dead units to count
                assert col not in run.data.metrics
                continue
            hist = client.get_metric_history(run.info.run_id, col)
            if col in ("train_mse", "test_mse"):  # curves: every epoch
                assert [m.step for m in hist] == list(range(1, EPOCHS + 1))
                assert [m.value for m in hist] == pytest.approx(values.tolist(), rel=1e-12)
            else:  # per-layer diagnostics: the final value (every epoch: parent's table)
                assert [(m.step, m.value) for m in hist] == [(EPOCHS, values[-1])]


def test_child_runs_carry_the_training_times_given_and_their_final_status(uri, results):
    parent, run_ids = None, None
    with sweep_run.open_sweep_run("times", uri=uri, tags=TAGS) as run:
        run_ids = run.log_results(results, IN_FEATURES, start_ms=1_000_000, end_ms=1_005_000)
        parent = run.run_id
    client = MlflowClient(uri)
    for r in results:
        info = client.get_run(run_ids[r.config.run_key]).info
        assert (info.start_time, info.end_time) == (1_000_000, 1_005_000)
        assert info.status == ("FAILED" if r.diverged else "FINISHED")
        assert info.run_name == r.config.run_key
    assert client.get_run(parent).info.status == "FINISHED"


def _inputs(run):
    """A run's data sets as the UI lists them: (name, digest, source type, source, tags)."""
    return sorted(
        (d.dataset.name, d.dataset.digest, d.dataset.source_type, d.dataset.source)
        + tuple(sorted((t.key, t.value) for t in d.tags))
        for d in run.inputs.dataset_inputs
    )


def _comparable(run):
    """What a user sees of a run, without its ids."""
    tags = {k: v for k, v in run.data.tags.items() if k not in ("model_uri", "mlflow.parentRunId")}
    profiles = tuple(sorted((d.dataset.name, d.dataset.profile) for d in run.inputs.dataset_inputs))
    return (
        run.info.run_name,
        run.info.status,
        run.data.params,
        run.data.metrics,
        tags,
        _inputs(run),
        profiles,
    )


def bulk_vs_client(uris: dict[str, str], results) -> None:
    """The hand-written SQL path against MLflow's client, each into its own store (`uris`:
    {"client": uri, "bulk": uri}), read back by MLflow's client: the same runs."""
    from sqlalchemy import create_engine, text

    from bnmodels.tracking.sql_bulk import SqlBulkWriter
    from bnmodels.tracking.writers import ClientWriter

    got = {}
    for name, make in (
        ("client", lambda r: ClientWriter(r.client, r.uri, r.experiment_id, 5)),
        ("bulk", lambda r: SqlBulkWriter(r.client, r.uri, r.experiment_id, 5)),
    ):
        uri = uris[name]
        with sweep_run.open_sweep_run("same", uri=uri, tags=TAGS, inputs=INPUTS) as run:
            children = run.child_runs(results, IN_FEATURES, 1_000, 2_000)
            run_ids = make(run).write(children[:2])
            # new data sets, and where they come from: a file, with its columns as profile
            file = FileSpec("tiny", "t.csv", "t.csv", "y", "regression", 1, 0.5, rows=9)
            recorded = {"md5": "a" * 32, "rows": 9, "target": "y", "features": ["u", "v"]}
            source = {"tiny": source_input(file, recorded)}
            run.inputs = data_inputs({"tiny/none": "f" * 32}, "elsewhere", source)
            children = run.child_runs(results, IN_FEATURES, 1_000, 2_000)
            run_ids |= make(run).write(children[2:])
        client = MlflowClient(uri)
        got[name] = {k: _comparable(client.get_run(i)) for k, i in run_ids.items()}
        for k, i in run_ids.items():
            assert client.get_run(i).data.tags["model_uri"] == f"runs:/{i}/model.pt"
            curve = client.get_metric_history(i, "test_mse")
            got[name][k] += (tuple((m.step, m.value, m.timestamp) for m in curve),)
        # one row per data set in the experiment, however many runs use it
        engine = create_engine(uri)
        with engine.connect() as con:
            rows = con.execute(text("SELECT name, digest FROM datasets ORDER BY name, digest"))
            assert [(n, d[:1]) for n, d in rows] == [
                ("tiny", "a"),
                ("tiny/none/test", "0"),
                ("tiny/none/test", "f"),
                ("tiny/none/train", "0"),
                ("tiny/none/train", "f"),
            ]
        engine.dispose()
    assert got["bulk"] == got["client"]
    assert [len(v[5]) for v in got["bulk"].values()] == [2, 2, 3, 3]  # train, test, source
    last = list(got["bulk"].values())[-1][6]
    assert dict(last)["tiny"] == json.dumps({"rows": 9, "target": "y", "features": ["u", "v"]})


def test_the_bulk_sql_writer_stores_what_mlflows_own_client_stores(tmp_path, results):
    """On SQLite; tests/test_server.py runs the same on PostgreSQL."""
    bulk_vs_client({n: f"sqlite:///{tmp_path}/{n}.db" for n in ("client", "bulk")}, results)


def test_each_run_logs_its_train_and_test_data_with_the_plans_digest(uri, logged):
    client = MlflowClient(uri)
    parent_id, run_ids = logged
    source = '{"uri": "data/processed/tiny/none.pt"}'
    want = [
        ("tiny/none/test", MD5, "local", source, ("mlflow.data.context", "test")),
        ("tiny/none/train", MD5, "local", source, ("mlflow.data.context", "train")),
    ]
    for run_id in [parent_id, *run_ids.values()]:
        assert _inputs(client.get_run(run_id)) == want


def test_the_sweep_logs_a_landing_view_of_its_latest_execution(uri, results, logged):
    from bnmodels.tracking import ui_view

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("bnmodels/tiny")
    state = ui_view.read_view_tag(exp.tags["mlflow.sharedViewState.compare"])
    parent_id, _ = logged
    assert state["searchFilter"] == f"tags.`mlflow.parentRunId` = '{parent_id}'"
    keys = [k["groupByData"] for k in state["groupBy"]["groupByKeys"]]
    assert keys == ["activation", "norm", "norm_at", "depth", "lr"]
    assert [c["metricKey"] for c in state["compareRunCharts"]] == ["test_mse", "train_mse"]
    name = json.loads(exp.tags["mlflow.sharedViewState.compare"])["name"]
    assert name == "tiny: 3 configurations, 4 runs (latest execution)"


def test_children_point_to_one_finished_parent_that_holds_the_sweep(uri, results, logged):
    client = MlflowClient(uri)
    parent_id, run_ids = logged
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert {k: parent.data.tags[k] for k in TAGS} == TAGS
    assert parent.data.params["varying"] == "activation,norm,norm_at,depth,lr,seed"
    assert parent.data.params["depth"] == "1,2"
    assert {"history.csv", "diagnostics.json"} <= {a.path for a in client.list_artifacts(parent_id)}
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    assert {c.info.run_id for c in children} == set(run_ids.values())


def test_experiment_opens_in_the_ml_view_and_keeps_artifacts_next_to_the_store(uri, logged):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("bnmodels/tiny")
    assert exp.tags[store.EXPERIMENT_KIND_TAG] == "custom_model_development"
    store_dir = store.sqlite_path(uri).parent
    for run_id in logged[1].values():
        artifacts = Path(urlparse(client.get_run(run_id).info.artifact_uri).path)
        assert artifacts.is_relative_to(store_dir / "mlartifacts" / "tiny")


def test_logged_model_loads_weights_only_and_reproduces_the_final_test_mse(
    uri, split, results, logged, monkeypatch
):
    from bnmodels.training.model import MLP

    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", raising=False)
    client = MlflowClient(uri)
    for r in results[:3]:
        run_id = logged[1][r.config.run_key]
        assert client.get_run(run_id).data.tags["model_uri"] == f"runs:/{run_id}/model.pt"
        assert [a.path for a in client.list_artifacts(run_id)] == ["model.pt"]
        model = sweep_run.load_run_model(run_id, uri)
        assert isinstance(model, MLP) and not model.training
        with torch.no_grad():
            mse = torch.nn.functional.mse_loss(model(split.x_test), split.y_test).item()
        assert mse == pytest.approx(r.final_test_mse, rel=1e-6)
        assert sorted(model.state_dict()) == sorted(r.state_dict)


class _Planted:
    def __reduce__(self):  # what a malicious pickle does: call a function on load
        return (os.system, ("echo planted",))


def test_a_model_file_that_would_run_code_is_refused(uri, results, logged):
    run_id = logged[1][results[0].config.run_key]
    artifacts = Path(urlparse(MlflowClient(uri).get_run(run_id).info.artifact_uri).path)
    good = (artifacts / "model.pt").read_bytes()
    torch.save({"format": "bnmodels-weights/1", "payload": _Planted()}, artifacts / "model.pt")
    try:
        with pytest.raises(TrackingError, match="cannot be loaded.*Weights only load failed"):
            sweep_run.load_run_model(run_id, uri)
    finally:
        (artifacts / "model.pt").write_bytes(good)


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


def _log_in_process(uri, sweep, results, barrier):
    barrier.wait()  # all three create the fresh store at the same moment
    log_sweep(sweep, results, uri=uri, in_features=IN_FEATURES, tags=TAGS)


@pytest.mark.slow  # three processes racing to create one store
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
        store.check_reachable(uri)
    assert time.monotonic() - start < 10
    with pytest.raises(TrackingError, match=uri):
        log_sweep("down", results, uri=uri, in_features=IN_FEATURES, tags=TAGS)


def test_deleted_model_artifacts_give_a_tracking_error(uri, results):
    _, run_ids = log_sweep("deleted", results[:1], uri=uri, in_features=IN_FEATURES, tags=TAGS)
    run_id = run_ids[results[0].config.run_key]
    artifacts = urlparse(MlflowClient(uri).get_run(run_id).info.artifact_uri).path
    (Path(artifacts) / "model.pt").unlink()
    with pytest.raises(TrackingError, match=f"run {run_id} is missing"):
        sweep_run.load_run_model(run_id, uri)
    with pytest.raises(TrackingError, match="not found"):
        sweep_run.load_run_model("0" * 32, uri)


def _interrupt_after(n, exc):
    calls = []

    def progress(k):
        calls.append(k)
        if len(calls) == n:
            raise exc

    return progress


def test_ctrl_c_marks_the_parent_killed_and_keeps_finished_children(uri, results, monkeypatch):
    monkeypatch.setattr(sweep_run, "CHUNK", 1)
    with (
        pytest.raises(KeyboardInterrupt),
        sweep_run.open_sweep_run("ctrlc", uri=uri, tags=TAGS) as run,
    ):
        run.log_results(results[:3], IN_FEATURES, progress=_interrupt_after(1, KeyboardInterrupt()))
    runs = _runs(uri, "ctrlc")
    assert runs["ctrlc"].info.status == "KILLED"
    assert runs[results[0].config.run_key].info.status == "FINISHED"
    assert len(runs) == 2  # the interrupted sweep logged nothing after it


def test_a_child_interrupted_while_a_server_logs_it_is_marked_killed(uri, results, monkeypatch):
    from bnmodels.tracking.writers import ClientWriter

    def interrupted(self, run_id, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(MlflowClient, "log_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with sweep_run.open_sweep_run("child", uri=uri, tags=TAGS) as run:
            writer = ClientWriter(run.client, uri, run.experiment_id, retry_s=5)
            writer.write(run.child_runs(results[:2], IN_FEATURES, 0, 0))
    runs = _runs(uri, "child")
    assert runs["child"].info.status == "KILLED"
    assert runs[results[0].config.run_key].info.status == "KILLED"


def test_sigterm_marks_runs_killed(uri, results):
    def sigterm(_):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs here

    with (
        pytest.raises(SystemExit) as exit_info,
        sweep_run.sigterm_as_exit(),
        sweep_run.open_sweep_run("sigterm", uri=uri, tags=TAGS) as run,
    ):
        run.log_results(results[:2], IN_FEATURES, progress=sigterm)
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    assert _runs(uri, "sigterm")["sigterm"].info.status == "KILLED"


def test_an_error_marks_the_parent_failed(uri, results):
    with (
        pytest.raises(RuntimeError, match="boom"),
        sweep_run.open_sweep_run("error", uri=uri, tags=TAGS) as run,
    ):
        run.log_results(
            results[:2], IN_FEATURES, progress=_interrupt_after(1, RuntimeError("boom"))
        )
    assert _runs(uri, "error")["error"].info.status == "FAILED"


def test_a_parent_opened_before_training_records_an_interrupted_training(uri, results):
    with pytest.raises(KeyboardInterrupt):
        with sweep_run.open_sweep_run("training", uri=uri, tags=TAGS) as run:
            run.log_results(results[:1], IN_FEATURES)
            raise KeyboardInterrupt  # while training the next group
    runs = _runs(uri, "training")
    assert runs["training"].info.status == "KILLED"
    assert runs[results[0].config.run_key].info.status == "FINISHED"


def test_default_tracking_uri_is_the_env_then_the_dvc_root_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert store.default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))
    assert store.default_tracking_uri(tmp_path / "copy") == (f"sqlite:///{tmp_path}/repo/mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert store.default_tracking_uri(tmp_path) == "http://mlflow:5000"


def test_experiment_url_opens_the_runs_table_of_the_ml_view():
    ml = "runs?workflowType=machine_learning"
    assert store.experiment_url("sqlite:////r/mlflow.db", "4") == (
        f"http://127.0.0.1:5000/#/experiments/4/{ml}"
    )
    assert store.experiment_url("https://u:pw@mlflow.example/", "4") == (
        f"https://mlflow.example/#/experiments/4/{ml}"
    )


def test_varying_params_name_the_keys_that_vary(results):
    params = sweep_run.varying_params([r.config for r in results])
    assert params["varying"] == "activation,norm,norm_at,depth,lr,seed"
    assert params["activation"] == "sigmoid,relu,tanh" and "dataset" not in params
    assert params["norm"] == "batch,none" and params["norm_at"] == "pre,post,none"
    assert sweep_run.varying_params([results[0].config])["varying"] == "-"


def test_importing_tracking_does_not_import_mlflow_or_torch():
    code = "import sys, bnmodels.tracking.sweep_run; print('mlflow' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_forked_logger_logs_the_same_runs_as_logging_in_process(tmp_path, results):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    store.ensure_store(uri)
    with sweep_run.open_sweep_run("forked", uri=uri, tags=TAGS) as parent:
        with ForkedLogger(parent, IN_FEATURES) as logger:
            logger.submit(results[:2], 1_000, 2_000)
            logger.submit(results[2:], 2_000, 3_000)
            run_ids = logger.close()
    client = MlflowClient(uri)
    assert set(run_ids) == {r.config.run_key for r in results}
    for r in results:
        run = client.get_run(run_ids[r.config.run_key])
        assert run.data.tags["mlflow.parentRunId"] == parent.run_id
        assert run.info.status == ("FAILED" if r.diverged else "FINISHED")
        assert (run.info.start_time, run.info.end_time) == (
            (1_000, 2_000) if r in results[:2] else (2_000, 3_000)
        )
        assert run.data.metrics["train_mse"] == pytest.approx(
            float(r.history["train_mse"][~np.isnan(r.history["train_mse"])][-1]), rel=1e-12
        )
    model = sweep_run.load_run_model(run_ids[results[0].config.run_key], uri)
    for k, v in results[0].state_dict.items():
        assert torch.equal(model.state_dict()[k], v)


HANG_SCRIPT = """
import sys
from bnmodels.tracking import store
from bnmodels.tracking import sweep_run
from bnmodels.tracking.workers import ForkedLogger
from mlflow import MlflowClient
import test_tracking as T
uri = sys.argv[1]
store.ensure_store(uri)
results = T.results.__wrapped__(T.split.__wrapped__()) * 40  # ~1 MB of queued chunks
bogus = sweep_run.SweepRun(MlflowClient(uri), uri, "s", "999999", "0" * 32, {})
with ForkedLogger(bogus, T.IN_FEATURES) as logger:
    for i in range(0, len(results), 32):
        logger.submit(results[i : i + 32], 0, 0)
    logger.close()
"""


@pytest.mark.slow  # a logger process that fails, and the exit that must follow
def test_a_failing_logger_raises_and_the_process_still_exits(tmp_path):
    """The worker fails on its first chunk while ~1 MB of chunks wait in the queue: the
    caller must get a TrackingError and exit, not hang on the queue's feeder thread."""
    p = subprocess.run(
        [sys.executable, "-c", HANG_SCRIPT, f"sqlite:///{tmp_path}/m.db"],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode != 0
    assert "TrackingError" in p.stderr and "logging child runs failed" in p.stderr


def test_a_rerun_resumes_an_unfinished_parent_without_duplicates_or_running_runs(uri, results):
    """A server that dies mid-sweep leaves the parent and the child being logged RUNNING;
    the next execution (same tags) keeps the finished children and logs the rest once."""
    client = MlflowClient(uri)
    exp = store.experiment_id(client, uri, "resume")
    dead = client.create_run(exp, run_name="resume", tags={**TAGS, "sweep": "resume"})
    run = sweep_run.SweepRun(client, uri, "resume", exp, dead.info.run_id, dict(TAGS))
    kept = run.log_results(results[:2], IN_FEATURES)
    stuck = client.create_run(
        exp,
        run_name=results[2].config.run_key,
        tags={"mlflow.parentRunId": dead.info.run_id, "run_key": results[2].config.run_key},
    )
    other = dict(TAGS, params_hash="another plan")  # not resumed: a different sweep plan
    with sweep_run.open_sweep_run("resume", uri=uri, tags=other):
        pass
    parent_id, run_ids = log_sweep("resume", results, uri=uri, in_features=IN_FEATURES, tags=TAGS)
    assert parent_id == dead.info.run_id
    assert {k: run_ids[k] for k in kept} == kept
    runs = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(r.data.tags["run_key"] for r in runs) == sorted(run_ids)
    assert client.get_run(stuck.info.run_id).info.lifecycle_stage == "deleted"
    statuses = {r.info.status for r in client.search_runs([exp])}
    assert "RUNNING" not in statuses and client.get_run(parent_id).info.status == "FINISHED"
    assert len(client.search_runs([exp], "attributes.run_name = 'resume'")) == 2


def test_a_dvc_experiment_names_and_tags_its_parent_run(uri, results):
    env = {"DVC_EXP_NAME": "lucky-lr", "DVC_EXP_BASELINE_REV": "abc123", "OTHER": "x"}
    tags = {**TAGS, **sweep_run.dvc_experiment_tags(env)}
    assert sweep_run.dvc_experiment_tags({}) == {}
    parent_id, run_ids = log_sweep(
        "dvcexp", results[:1], uri=uri, in_features=IN_FEATURES, tags=tags
    )
    client = MlflowClient(uri)
    parent = client.get_run(parent_id)
    assert parent.info.run_name == "dvcexp lucky-lr"
    assert parent.data.tags["dvc_exp_name"] == "lucky-lr"
    assert parent.data.tags["dvc_exp_baseline_rev"] == "abc123"
    child = client.get_run(next(iter(run_ids.values())))
    assert child.data.tags["dvc_exp_name"] == "lucky-lr"


def test_log_workers_follow_the_store_and_the_cores_left_after_training(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    assert log_workers("auto", "sqlite:////x/mlflow.db", 1) == 1
    assert log_workers("auto", "http://127.0.0.1:5000", 1) == 5
    assert log_workers("auto", "postgresql://u@127.0.0.1/db", 2) == 4
    assert log_workers("auto", "http://127.0.0.1:5000", 6) == 1
    assert log_workers(3, "sqlite:////x/mlflow.db", 1) == 3


def test_a_logged_classifier_loads_back_with_its_classes_and_final_test_accuracy(tmp_path):
    """A classification run (SPEC 2b): its curves are step metrics, its precise-BN metrics
    are logged, and its weights-only model gives back the final test accuracy."""
    from bnmodels.experiment.config import ClusterSpec

    blobs = generate(ClusterSpec("blobs", 3, 40, 2, 3.0, 1.5, 420, 0.7, (1.0,) * 2, (0.0,) * 2))
    cfg = RunConfig("blobs", "none", "relu", "pre", 1, 4, "default", 0.1, 10, 0.1, EPOCHS, 0)
    result = train_reference(cfg, blobs)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    _, run_ids = log_sweep("cla", [result], uri=uri, in_features={"blobs": 2}, tags=TAGS)
    run_id = run_ids[cfg.run_key]
    client = MlflowClient(uri)
    steps = client.get_metric_history(run_id, "test_accuracy")
    assert [m.step for m in steps] == list(range(1, EPOCHS + 1))
    precise = client.get_run(run_id).data.metrics["final_test_accuracy_precise_bn"]
    assert precise == pytest.approx(result.precise_bn["accuracy"])
    model = sweep_run.load_run_model(run_id, uri)
    assert model.out.out_features == 3
    with torch.no_grad():
        accuracy = (model(blobs.x_test).argmax(1) == blobs.y_test).double().mean().item()
    assert accuracy == result.final_test_accuracy


def test_varying_params_tell_every_norm_and_placement_apart():
    """bn alone would call layer-normalized runs and runs without a norm the same."""
    from configs import run_config

    cfgs = [
        run_config(),
        run_config(bn="pre"),
        run_config(norm="layer", norm_at="post"),
        run_config(norm="group", groups=2),
    ]
    params = sweep_run.varying_params(cfgs)
    assert params["varying"] == "norm,norm_at,groups"
    assert params["norm"] == "none,batch,layer,group"
    assert params["norm_at"] == "none,pre,post" and params["groups"] == "0,2"
