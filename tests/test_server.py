"""The team tracking server (`make server`): PostgreSQL + `mlflow server` on loopback, a
tiny pipeline logging through it, models loaded back weights-only, and a server killed in
the middle of a sweep. Skipped only where PostgreSQL's binaries are absent."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))

pytestmark = [
    pytest.mark.slow,  # servers and dvc repro: not in make test-fast
    pytest.mark.skipif(
        not (PG_BIN / "initdb").exists(),
        reason=f"PostgreSQL binaries absent from {PG_BIN} (Debian/Ubuntu: apt install postgresql)",
    ),
]

PARAMS = """\
datasets:
  tiny: {num_examples: 60, w: [2, -1], bias: false, delta: 0.01, deg: 2, seed: 420,
         train_fraction: 0.7}
defaults: {dataset: tiny, normalization: none, activation: sigmoid, bn: none, depth: 1,
           width: 4, init: default, momentum: 0.1, batch_size: 10, lr: 0.03, epochs: 3,
           seed: 24}
sweeps:
  small: {bn: [none, pre], activation: [relu, tanh], seed: [24, 25]}
  big: {bn: [none, pre, post], depth: [1, 2], seed: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}
execution: {log_retry_s: 3}
claims: {}
file_datasets: {}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(cmd, cwd, check=True, timeout=600, **env) -> subprocess.CompletedProcess:
    e = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    p = subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode:
        raise AssertionError(f"{cmd} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


class Server:
    def __init__(self):
        # PostgreSQL runs as the `postgres` user when we are root: its folder must be
        # reachable by that user, which pytest's private temporary folders are not.
        self.dir = Path(tempfile.mkdtemp(prefix="bnmodels-server-"))
        self.dir.chmod(0o755)
        self.port, self.pg_port = _free_port(), _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.make = [
            "make",
            "-s",
            "-C",
            str(ROOT),
            f"SERVER_DIR={self.dir}",
            f"PORT={self.port}",
            f"PG_PORT={self.pg_port}",
        ]

    def start(self):
        return sh([*self.make, "server"], ROOT, timeout=300)

    def stop(self):
        return sh([*self.make, "server-stop"], ROOT, timeout=120)

    def kill_mlflow(self):
        """What a crash does: the server and its workers gone at once, no clean-up."""
        os.killpg(int((self.dir / "mlflow.pid").read_text()), signal.SIGKILL)

    def healthy(self) -> bool:
        try:
            return urllib.request.urlopen(f"{self.uri}/health", timeout=2).status == 200
        except OSError:
            return False

    def sql(self, query: str) -> str:
        return sh(
            [
                str(PG_BIN / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.pg_port),
                "-U",
                "mlflow",
                "-d",
                "mlflow",
                "-tAc",
                query,
            ],
            ROOT,
        ).stdout.strip()


@pytest.fixture(scope="module")
def server():
    s = Server()
    s.start()
    yield s
    s.stop()
    shutil.rmtree(s.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory, server) -> Path:
    """A fresh repository with the pipeline and a tiny params.yaml, logging to the server."""
    d = tmp_path_factory.mktemp("repo")
    for name in ("bnmodels", "stages"):
        shutil.copytree(ROOT / name, d / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "registry.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, d / name)
    (d / "params.yaml").write_text(PARAMS)
    sh(["git", "init", "-q"], d)
    sh(["dvc", "init", "-q"], d)
    sh(["dvc", "config", "core.analytics", "false"], d)
    return d


def test_make_server_serves_mlflow_on_postgresql_on_loopback(server):
    assert server.healthy()
    assert server.sql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs'")
    pid = (server.dir / "mlflow.pid").read_text().strip()
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"--host" in cmdline and cmdline[cmdline.index(b"--host") + 1] == b"127.0.0.1"
    assert b"--artifacts-destination" in cmdline


def test_a_tiny_pipeline_logs_through_the_server_into_postgresql(server, repo):
    import torch
    from mlflow import MlflowClient

    from bnmodels.experiment.data import load_split
    from bnmodels.tracking.sweep_run import load_run_model

    sh(["dvc", "repro", "train@small"], repo, MLFLOW_TRACKING_URI=server.uri)
    runs = pd.read_csv(repo / "runs" / "small" / "runs.csv")
    assert len(runs) == 8 and runs["mlflow_run_id"].is_unique
    ids = ",".join(f"'{i}'" for i in runs["mlflow_run_id"])
    assert server.sql(f"SELECT count(*) FROM runs WHERE run_uuid IN ({ids})") == "8"
    client = MlflowClient(server.uri)
    for row in runs.itertuples():
        run = client.get_run(row.mlflow_run_id)
        assert run.info.status == "FINISHED" and run.data.params["seed"] == str(row.seed)
        assert [m.step for m in client.get_metric_history(row.mlflow_run_id, "test_mse")] == [
            1,
            2,
            3,
        ]
    # the weights come back through the server's proxied artifacts, weights only
    row = runs.iloc[0]
    model = load_run_model(row.mlflow_run_id, server.uri)
    split = load_split(repo / "data" / "processed" / "tiny" / f"{row.normalization}.pt")
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(model(split.x_test), split.y_test).item()
    assert mse == pytest.approx(row.final_test_mse, rel=1e-6)
    assert list((server.dir / "artifacts").rglob("model.pt"))


def _sweep_runs(uri: str, sweep: str) -> list:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(f"bnmodels/{sweep}")
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], "", ViewType.ACTIVE_ONLY, max_results=5000)


def test_the_server_killed_mid_sweep_fails_the_stage_clearly_and_the_rerun_completes(server, repo):
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": server.uri,
    }
    proc = subprocess.Popen(
        ["dvc", "repro", "train@big"],
        cwd=repo,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:  # kill the server once some child runs are in, well before all 60
        deadline = time.monotonic() + 300
        while sum("run_key" in r.data.tags for r in _sweep_runs(server.uri, "big")) < 3:
            assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
        server.kill_mlflow()
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "failed for 3 s" in out and server.uri in out, out
    assert "Traceback" not in out, out
    assert not (repo / "runs" / "big").exists()  # nothing half-written

    server.start()  # back: the next repro logs the whole sweep once
    sh(["dvc", "repro", "train@big"], repo, MLFLOW_TRACKING_URI=server.uri)
    runs = pd.read_csv(repo / "runs" / "big" / "runs.csv")
    assert len(runs) == 60 and runs["mlflow_run_id"].is_unique
    logged = _sweep_runs(server.uri, "big")
    children = [r for r in logged if "run_key" in r.data.tags]
    parents = [r for r in logged if "run_key" not in r.data.tags]
    assert sorted(r.data.tags["run_key"] for r in children) == sorted(runs["run_key"])
    assert {r.info.run_id for r in children} == set(runs["mlflow_run_id"])
    assert [r.info.status for r in parents] == ["FINISHED"]
    assert {r.info.status for r in children} == {"FINISHED"}


def test_two_dvc_queue_workers_log_their_experiments_into_the_server_once_each(server, repo):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    sh(["dvc", "repro", "train@small"], repo, MLFLOW_TRACKING_URI=server.uri)
    sh(["git", "add", "-A"], repo)
    sh([*git, "commit", "-q", "-m", "baseline"], repo)
    names = []
    for seeds in ("[24,26]", "[24,27]"):
        out = sh(["dvc", "exp", "run", "--queue", "-S", f"sweeps.small.seed={seeds}"], repo)
        names.append(re.search(r"Queued experiment '([^']+)'", out.stdout).group(1))
    sh(["dvc", "queue", "start", "--jobs", "2"], repo, MLFLOW_TRACKING_URI=server.uri)
    deadline = time.monotonic() + 600
    while any(
        w in (status := sh(["dvc", "queue", "status"], repo).stdout) for w in ("Running", "Queued")
    ):
        assert time.monotonic() < deadline, status
        time.sleep(2)
    assert status.count("Success") == 2, status
    logged = _sweep_runs(server.uri, "small")
    for name in names:
        parents = [
            r
            for r in logged
            if r.data.tags.get("dvc_exp_name") == name and "run_key" not in r.data.tags
        ]
        assert [(p.info.run_name, p.info.status) for p in parents] == [
            (f"small {name}", "FINISHED")
        ]
        assert parents[0].data.tags["dvc_exp_baseline_rev"]
        children = [
            r for r in logged if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
        ]
        assert len(children) == 8 and len({c.data.tags["run_key"] for c in children}) == 8
        assert {c.info.status for c in children} == {"FINISHED"}


def test_make_server_stop_stops_mlflow_and_postgresql(server):
    server.stop()
    assert not server.healthy()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", server.pg_port)) != 0
    server.start()  # and it starts again on the same data
    assert server.healthy()


def test_the_bulk_sql_writer_stores_what_mlflows_own_client_stores_on_postgresql(server):
    """The SQL bulk path on PostgreSQL (every other PostgreSQL test goes through the HTTP
    server): two fresh databases on the cluster of `make server`, the same check as on
    SQLite (tests/test_tracking.py)."""
    from test_tracking import SPEC, bulk_vs_client, make_results

    from bnmodels.experiment.data import generate

    uris = {}
    for name in ("client", "bulk"):
        server.sql(f"CREATE DATABASE parity_{name}")
        uris[name] = f"postgresql+psycopg2://mlflow@127.0.0.1:{server.pg_port}/parity_{name}"
    bulk_vs_client(uris, make_results(generate(SPEC)))
