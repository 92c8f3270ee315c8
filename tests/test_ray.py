"""A real Ray cluster on loopback: a head and a worker node (`ray start` twice on this
machine), started and stopped here. A sweep trained through it gives the local path's
tables; a worker node killed mid-sweep loses no run and logs none twice."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bnmodels.errors import StageError
from bnmodels.experiment.config import Execution

ray = pytest.importorskip("ray", reason="ray is not installed (make setup-ray)")
pytestmark = pytest.mark.slow  # a cluster on loopback: not in make test-fast

ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")

# The sweep, trained by a separate driver process (the cluster's client), into `out`.
DRIVER = """\
import sys
from configs import quad2_spec, run_config
from bnmodels.experiment.config import Execution
from bnmodels.experiment.data import generate
from bnmodels.tracking.train_and_log import train_and_log

if __name__ == "__main__":  # worker processes import this module too
    cluster, address, uri, out = sys.argv[1:5]
    runs = [run_config(lr=lr, seed=s, bn=bn, epochs=int(sys.argv[5]))
            for bn in ("none", "pre") for lr in (0.01, 0.1, 1.0, 100.0) for s in range(40)]
    split = generate(quad2_spec(name="quad2", num_examples=60))
    train_and_log("onray", runs, {runs[0].data_key: split}, uri=uri, out=out,
                  execution=Execution(cluster=cluster, address=address, workers=2))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_node(args: list[str], tmp: Path, log: str) -> subprocess.Popen:
    """`ray start --block` in its own process group (killed whole to lose the node)."""
    cmd = [str(RAY), "start", "--block", "--num-cpus", "1", "--disable-usage-stats", *args]
    env = {**os.environ, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    out = open(tmp / log, "wb")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def wait_nodes(address: str, n: int, timeout: float = 120) -> None:
    code = (
        "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR');"
        "print(sum(x['Alive'] for x in ray.nodes()))"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True)
        if p.returncode == 0 and p.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        time.sleep(1)
    raise AssertionError(f"the Ray cluster at {address} never had {n} nodes")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ray")
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = ray_node(
        ["--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
         "--include-dashboard=false", "--temp-dir", str(tmp / "t")],
        tmp, "head.log",
    )  # fmt: skip
    nodes = {"head": head}
    try:
        wait_nodes(address, 1)
        nodes["worker"] = ray_node(
            ["--address", address, "--node-ip-address", "127.0.0.1"], tmp, "worker.log"
        )
        wait_nodes(address, 2)
        yield address, nodes, tmp
    finally:
        for p in nodes.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in nodes.values():  # a head node took over 30 s to end on SIGTERM: 5 s
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def drive(tmp: Path, name: str, cluster: str, address: str, epochs: int, **popen):
    (tmp / "driver.py").write_text(DRIVER)
    cmd = [sys.executable, str(tmp / "driver.py"), cluster, address,
           f"sqlite:///{tmp / name}.db", str(tmp / name), str(epochs)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)


def children(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT k.value, r.status FROM runs r JOIN tags k ON k.run_uuid = r.run_uuid"
            " AND k.key = 'run_key' WHERE r.lifecycle_stage = 'active'"
        ).fetchall()


def logged(db: Path) -> int:
    try:
        return len(children(db))
    except sqlite3.Error:  # not created yet, or being written
        return 0


def computed(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    from bnmodels.training.tables import read_tables

    runs, history = read_tables(folder)
    return runs.drop(columns="mlflow_run_id"), history


def test_an_unreachable_cluster_fails_before_any_run_opens_naming_it(tmp_path):
    from bnmodels.training.ray_cluster import RayCluster

    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(StageError, match=f"Ray cluster at {address} is not reachable"):
        RayCluster.connect(address)
    with pytest.raises(StageError, match="RAY_ADDRESS"):
        RayCluster.connect("")
    from bnmodels.tracking.train_and_log import train_and_log

    with pytest.raises(StageError, match=address):
        train_and_log(
            "x", [], {}, execution=Execution(cluster="ray", address=address),
            uri=f"sqlite:///{tmp_path}/m.db",
        )  # fmt: skip
    assert not (tmp_path / "m.db").exists()  # no store touched, no run opened


@pytest.mark.slow
def test_a_sweep_on_the_cluster_gives_the_local_tables_and_survives_a_lost_node(cluster):
    address, nodes, tmp = cluster
    local = drive(tmp, "local", "local", "", 30)
    assert local.wait(timeout=600) == 0, local.stdout.read().decode()
    onray = drive(tmp, "onray", "ray", address, 30)
    deadline = time.monotonic() + 300
    while not logged(tmp / "onray.db"):  # a shard is back: the others train on both nodes
        assert onray.poll() is None and time.monotonic() < deadline, onray.stdout.read()
        time.sleep(0.2)
    os.killpg(nodes["worker"].pid, signal.SIGKILL)  # the worker node is lost
    assert onray.poll() is None  # mid-sweep
    out = onray.communicate(timeout=600)[0].decode()
    if onray.returncode != 0:  # a shard out of retries: the rerun completes it
        rerun = drive(tmp, "onray", "ray", address, 30)
        out += rerun.communicate(timeout=600)[0].decode()
        assert rerun.returncode == 0, out
    for got, want in zip(computed(tmp / "onray"), computed(tmp / "local"), strict=True):
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    runs = children(tmp / "onray.db")
    keys = [k for k, _ in runs]
    assert len(keys) == len(set(keys)) == 320, out  # each run logged once
    assert {s for _, s in runs} <= {"FINISHED", "FAILED"}
