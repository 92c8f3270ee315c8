"""Ctrl-C at any moment of `dvc repro`: every process exits within seconds, none is left
behind, the previous outputs stay as they were, and the rerun logs each run once."""

from __future__ import annotations

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

pytestmark = pytest.mark.slow  # dvc repro, servers, clusters: not in make test-fast

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXIT_S = 10  # "within seconds" on a loaded 2-core machine

# 150 runs: 3 shards (64, 64, 22) trained by 2 workers for a few seconds, then logged.
PARAMS = """\
datasets:
  tiny: {num_examples: 60, w: [2, -1], bias: false, delta: 0.01, deg: 2, seed: 420,
         train_fraction: 0.7}
defaults: {dataset: tiny, normalization: none, activation: sigmoid, bn: none, depth: 1,
           width: 4, init: default, momentum: 0.1, batch_size: 5, lr: 0.03, epochs: 40,
           seed: 24}
sweeps:
  many: {bn: [none, pre, post], lr: [0.01, 0.03, 0.1, 0.3, 1.0], seed: [1, 2, 3, 4, 5, 6,
         7, 8, 9, 10]}
execution: {workers: 2}
claims: {}
file_datasets: {}
"""
N_RUNS = 150


def sh(cmd, cwd, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kw)
    assert p.returncode == 0, f"{cmd} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def digest(folder: Path) -> dict[str, str]:
    return {
        str(f.relative_to(folder)): hashlib.md5(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


def computed(folder: Path) -> dict[str, str]:
    """The folder's files, runs.csv without its MLflow ids (they change with a rerun)."""
    files = digest(folder)
    runs = pd.read_csv(folder / "runs.csv", dtype=str, keep_default_na=False)
    files["runs.csv"] = hashlib.md5(
        runs.drop(columns="mlflow_run_id").to_csv().encode()
    ).hexdigest()
    return files


def group_members(pgid: int) -> list[str]:
    """Live (not zombie) processes of a process group: 'pid command'."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm_end = text.rindex(")")
        state, _ppid, pgrp = text[comm_end + 2 :].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            out.append(f"{stat.parent.name} {text[text.index('(') + 1 : comm_end]}")
    return out


def statuses(repo: Path) -> list[tuple[str, str, str]]:
    """(status, run_key or '' for a parent, parent id) of the sweep's active runs."""
    with sqlite3.connect(repo / "mlflow.db") as db:
        return db.execute(
            "SELECT r.status, COALESCE(k.value, ''), COALESCE(p.value, '') FROM runs r"
            " JOIN experiments e ON r.experiment_id = e.experiment_id"
            " LEFT JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = 'run_key'"
            " LEFT JOIN tags p ON p.run_uuid = r.run_uuid AND p.key = 'mlflow.parentRunId'"
            " WHERE e.name = 'bnmodels/many' AND r.lifecycle_stage = 'active'"
        ).fetchall()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("interrupt")
    for name in ("bnmodels", "stages"):
        shutil.copytree(ROOT / name, d / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "registry.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, d / name)
    (d / "params.yaml").write_text(PARAMS)
    sh(["git", "init", "-q"], d)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty",
        "-m", "empty"], d)  # fmt: skip
    sh(["dvc", "init", "-q"], d)
    sh(["dvc", "config", "core.analytics", "false"], d)
    sh(["dvc", "repro", "train@many"], d)
    return d


def interrupted(repo: Path, stage: str, delay: float) -> tuple[str, int]:
    """`dvc repro -f -s <stage>`, Ctrl-C `delay` seconds in (unless it ended first); asserts
    that it and every process it started are gone within EXIT_S. Returns its output and
    exit status."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        ["dvc", "repro", "-f", "-s", stage],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # as a terminal starts a command: Ctrl-C not ignored, even when pytest itself was
        # started with SIGINT ignored (`nohup`, a script's `&`), which children inherit
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        t = time.monotonic()
        try:
            out = proc.communicate(timeout=EXIT_S)[0].decode()
        except subprocess.TimeoutExpired:
            left = group_members(proc.pid)
            for member in left:  # the stages print their stacks on SIGUSR1 (shutdown.py)
                if "python" in member:
                    os.kill(int(member.split()[0]), signal.SIGUSR1)
            time.sleep(1)
            os.killpg(proc.pid, signal.SIGKILL)
            stacks = proc.communicate()[0].decode()[-6000:]
            raise AssertionError(
                f"after Ctrl-C at {delay} s, still running {EXIT_S} s later: {left}\n{stacks}"
            ) from None
        while (left := group_members(proc.pid)) and time.monotonic() - t < EXIT_S:
            time.sleep(0.1)
        assert not left, f"Ctrl-C at {delay} s left {left}"
    finally:
        if proc.poll() is None or group_members(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()  # reaped: DVC's lock names this pid, and a zombie would hold it
    print(f"{stage}, Ctrl-C at {delay} s: exit {proc.returncode} in {time.monotonic() - t:.1f} s")
    return out, proc.returncode


@pytest.mark.slow
def test_ctrl_c_at_six_moments_exits_within_seconds_leaves_nothing_and_reruns_once(repo):
    before = computed(repo / "runs" / "many")
    # from DVC's start-up, through the stage's imports, training, logging, to the end
    statuses_ = []
    for delay in (0.5, 1.5, 2.5, 3.5, 4.5, 6.0):
        out, status = interrupted(repo, "train@many", delay)
        statuses_.append(status)
        # the previous tables, or (interrupted after the stage) the new ones, whole
        assert computed(repo / "runs" / "many") == before, (delay, out)
    # Ctrl-C did interrupt (a sweep that ignored it would finish: the same tables, exit 0)
    assert statuses_[0] != 0, statuses_
    sh(["dvc", "repro", "train@many"], repo)
    runs = pd.read_csv(repo / "runs" / "many" / "runs.csv")
    assert len(runs) == N_RUNS and runs["mlflow_run_id"].is_unique
    latest = runs["mlflow_run_id"].iloc[0]
    rows = statuses(repo)
    parent = next(
        p for s, k, p in rows if k and p and any(latest == x for x in runs["mlflow_run_id"])
    )
    children = [(s, k) for s, k, p in rows if p == parent]
    assert sorted(k for _, k in children) == sorted(runs["run_key"])  # each run once
    assert {s for s, _ in children} <= {"FINISHED", "FAILED"}
    assert all(s != "RUNNING" for s, _, _ in rows)


@pytest.mark.slow
def test_ctrl_c_while_the_report_is_built_or_drawn_leaves_the_previous_report_whole(repo):
    sh(["dvc", "repro", "aggregate"], repo)
    before = digest(repo / "reports")
    assert any(name.startswith("figures/") for name in before)
    # the stage's imports, the report built while its figures are drawn in workers, writes
    for delay in (1.0, 2.0, 3.0, 4.0):
        out, _ = interrupted(repo, "aggregate", delay)
        assert digest(repo / "reports") == before, (delay, out)
