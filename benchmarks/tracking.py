"""Runs logged per second: the project's logging path against a bare `MlflowClient` loop,
on SQLite and on the team server (`make server`: PostgreSQL), with 1, 2 and 4 writer
processes, all in this one invocation, printed with their ratios.

    PYTHONPATH=. python benchmarks/tracking.py                 # SQLite and the server
    PYTHONPATH=. python benchmarks/tracking.py --no-server     # SQLite only

Each run to log has the history of a depth-4 sigmoid run of 40 epochs: 12 columns, 480
values. The bare loop logs each run as a new user would: create_run with 2 tags, one
log_batch of the 480 values as step metrics and the 12 params, set_terminated. The
project's path (`ForkedLogger` into an open parent run) logs what the README describes:
curves every epoch, final per-layer values, params, tags, a weights file.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EPOCHS, DEPTH = 40, 4


def make_results(n: int):
    import torch

    from bnmodels.experiment.config import RunConfig
    from bnmodels.training.model import build_model
    from bnmodels.training.result import RunResult, history_columns

    base = RunConfig(
        "tiny", "none", "sigmoid", "pre", DEPTH, 4, "default", 0.1, 10, 0.03, EPOCHS, 0
    )
    state = build_model(base, 2).state_dict()
    rng = np.random.default_rng(0)
    cols = history_columns(DEPTH)
    out = []
    for i in range(n):
        history = {c: rng.random(EPOCHS) for c in cols}
        history["dead_fraction"] = np.full(EPOCHS, np.nan)  # sigmoid: none
        out.append(
            RunResult(
                replace(base, seed=i), history, False, {k: v.clone() for k, v in state.items()}, {}
            )
        )
    assert sum(np.isfinite(v).sum() for v in out[0].history.values()) == 480
    torch.set_num_threads(1)
    return out


def _bare_worker(uri, exp, results, barrier, times):
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    client = MlflowClient(uri)
    barrier.wait()
    t = time.perf_counter()
    for r in results:
        run = client.create_run(
            exp, run_name=r.config.run_key, tags={"sweep": "bench", "run_key": r.config.run_key}
        )
        ts = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v[i]), ts, i + 1)
            for k, v in r.history.items()
            for i in range(EPOCHS)
            if np.isfinite(v[i])
        ]
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, str(v)) for k, v in r.config.as_dict().items()],
        )
        client.set_terminated(run.info.run_id, "FINISHED")
    times.put((t, time.perf_counter()))


def bare(uri: str, results, workers: int) -> float:
    """Runs/s of `workers` processes each logging its share with a bare client loop."""
    from mlflow import MlflowClient

    from bnmodels.tracking import store

    exp = store.experiment_id(MlflowClient(uri), uri, f"bench-bare-{workers}-{time.time_ns()}")
    ctx = multiprocessing.get_context("fork")
    barrier, times = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=_bare_worker, args=(uri, exp, results[i::workers], barrier, times))
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    spans = [times.get() for _ in procs]
    for p in procs:
        p.join()
    return len(results) / (max(e for _, e in spans) - min(s for s, _ in spans))


def project(uri: str, results, workers: int) -> float:
    """Runs/s of the stage's path: ForkedLogger with `workers` processes, chunks of 32."""
    from bnmodels.tracking import sweep_run
    from bnmodels.tracking.workers import ForkedLogger

    sweep = f"bench-project-{workers}-{time.time_ns()}"
    with sweep_run.open_sweep_run(sweep, uri=uri, tags={"bench": "1"}) as parent:
        with ForkedLogger(parent, {"tiny": 2}, workers) as logger:
            t = time.perf_counter()
            now = int(time.time() * 1000)
            for i in range(0, len(results), sweep_run.CHUNK):
                logger.submit(results[i : i + sweep_run.CHUNK], now, now)
            ids = logger.close()
            dt = time.perf_counter() - t
    assert len(ids) == len(results)
    return len(results) / dt


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@click.command()
@click.option("--runs", default=96, show_default=True, help="runs logged per case")
@click.option("--workers", default="1,2,4", show_default=True)
@click.option("--server/--no-server", default=True, help="also on `make server`")
def main(runs: int, workers: str, server: bool):
    from bnmodels.tracking import store

    results = make_results(runs)
    counts = [int(w) for w in workers.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bnmodels-bench-"))
    tmp.chmod(0o755)  # PostgreSQL's user must reach its folder when we are root
    cases = [("sqlite", f"sqlite:///{tmp}/mlflow.db")]
    port = _free_port()
    make = [
        "make",
        "-s",
        "-C",
        str(ROOT),
        f"SERVER_DIR={tmp}/server",
        f"PORT={port}",
        f"PG_PORT={_free_port()}",
    ]
    if server:
        subprocess.run([*make, "server"], check=True, capture_output=True)
        cases.append(("server", f"http://127.0.0.1:{port}"))
    try:
        click.echo(f"{runs} runs a case, 480 values each; {os.cpu_count()} cores")
        click.echo(
            f"{'store':8s} {'workers':>7s} {'bare runs/s':>12s} {'project runs/s':>15s}"
            f" {'ratio':>6s}"
        )
        for name, uri in cases:
            store.ensure_store(uri)
            for w in counts:
                try:
                    b = bare(uri, results, w)
                except Exception as e:  # SQLite refuses concurrent writers
                    b, why = float("nan"), type(e).__name__
                else:
                    why = ""
                p = project(uri, results, w)
                click.echo(f"{name:8s} {w:7d} {b:12.1f} {p:15.1f} {p / b:5.1f}x {why}")
    finally:
        if server:
            subprocess.run([*make, "server-stop"], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
