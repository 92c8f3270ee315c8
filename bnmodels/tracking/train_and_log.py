"""Train a sweep and log it: the one path from a sweep's runs to runs/ and MLflow.

Used by the train stage, `scripts/ui_check.py` and the tests. In order:

1. everything that can fail fast fails before any MLflow run opens: the device, a named
   Ray cluster (`bnmodels.training.ray_cluster`), the tracking store;
2. the sweep's parent run opens (`sweep_run.open_sweep_run`), so that an interruption
   (Ctrl-C, SIGTERM) or a failure anywhere inside marks it KILLED or FAILED, and the next
   execution resumes it;
3. the shards train (`training.sweep.train_sweep`: in this process, in local worker
   processes, or on the Ray cluster) while forked loggers (`tracking.workers`) log each
   shard's results as they come back: MLflow's client is Python that would only take
   turns with the training for the GIL in a thread;
4. the sweep's tables go on the parent run, the loggers finish, the landing view is
   written, and the tables replace the output folder all at once (`tables.write_tables`):
   an interrupted or failed execution leaves the previous results as they were.

Each run is logged once: results reach the loggers only from this process, after their
shard came back whole (a retried shard or a killed worker sends nothing twice), and a
resumed parent skips the runs it already holds.
"""

from __future__ import annotations

import functools
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bnmodels.experiment.config import Execution, RunConfig
from bnmodels.experiment.data import Split
from bnmodels.pools import available_cores
from bnmodels.tracking import store, sweep_run
from bnmodels.tracking.workers import ForkedLogger, log_workers
from bnmodels.tracking.writers import DataInput
from bnmodels.training import sweep as training
from bnmodels.training.parallel import auto_workers
from bnmodels.training.result import RunResult
from bnmodels.training.tables import history_frame, sweep_texts, write_tables

LOG_CHUNK = sweep_run.CHUNK  # runs per logging task


@dataclass
class Logged:
    """What one execution of a sweep produced."""

    parent_id: str
    results: list[RunResult]
    run_ids: dict[str, str]  # run_key -> child run id
    history: pd.DataFrame


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def workers_for(execution: Execution, cores: int | None = None, device: str = "cpu") -> int:
    """Local training processes: `execution.workers`, or (auto) `auto_workers` on a CPU
    and one on a GPU (a whole group fills it: shards are groups there)."""
    if execution.workers != "auto":
        return int(execution.workers)
    if device != "cpu" and execution.engine == "batched":
        return 1
    return auto_workers(cores or available_cores(), execution.threads)


def _now_ms() -> int:
    return int(time.time() * 1000)


def train_and_log(
    sweep: str,
    runs: Sequence[RunConfig],
    splits: dict[tuple[str, str, int], Split],
    *,
    execution: Execution | None = None,
    uri: str | None = None,
    tags: Mapping[str, str] | None = None,
    inputs: Mapping[str, Sequence[DataInput]] | None = None,
    probes: bool = False,
    out: str | Path | None = None,
    progress: bool = False,
    trainer: Callable | None = None,
    in_features: Mapping[str, int] | None = None,
) -> Logged:
    """Train `runs` on `splits` as `execution` says, log them as one execution of `sweep`
    into `uri` (default: the project's store), and write the tables into `out` if given.

    `tags` go on the parent and every child (git commit, DVC stage, params hash, ...;
    `dvc_stage` and the git commit are added when missing); `inputs` are the data sets
    (`writers.data_inputs`). `trainer` replaces `training.sweep.train_sweep` (same
    signature), e.g. to log results computed elsewhere, with `in_features` (each data
    set's feature count) where `splits` is empty. The module doc gives the order.
    """
    execution = execution or Execution()
    cluster = None
    if execution.cluster == "ray":
        from bnmodels.training.ray_cluster import RayCluster

        cluster = RayCluster.connect(execution.address)  # before any run opens
    device = training.resolve_device(execution.device)
    workers = cluster.workers() if cluster else workers_for(execution, device=device)
    train = trainer or (cluster.train_sweep if cluster else training.train_sweep)
    started = None
    uri = uri or store.default_tracking_uri(Path.cwd())
    store.preflight(uri, sweep)  # a server that would refuse the runs: fail before training
    # SIGTERM from here on unwinds (SystemExit), so the workers are stopped and the runs
    # marked KILLED; Python's default would end this process and orphan the workers.
    with sweep_run.sigterm_as_exit():
        try:
            if trainer is None and cluster is None:  # local workers start training now,
                # forked before MLflow is imported; the store and parent run meanwhile
                started = training.start_sweep(runs, splits, execution, probes, workers)
                if started is not None:
                    train = functools.partial(train, started=started)
            store.check_reachable(uri)  # a dead server fails fast; creates SQLite's schema
            tags = {
                "dvc_stage": f"train@{sweep}",
                "mlflow.source.git.commit": git_commit(),
                **(tags or {}),
            }
            in_features = in_features or {ds: s.x_train.shape[1] for (ds, *_), s in splits.items()}
            loggers = log_workers(execution.log_workers, uri, workers * execution.threads)
            bars = _bars(sweep, len(runs), progress)
            with (
                sweep_run.open_sweep_run(
                    sweep,
                    uri=uri,
                    tags=tags,
                    params=sweep_run.varying_params(runs),
                    retry_s=execution.log_retry_s,
                    inputs=inputs,
                ) as parent,
                ForkedLogger(parent, in_features, loggers) as logger,
            ):
                results, history, run_ids, texts = _train_while_logging(
                    parent, logger, bars, train, runs, splits, execution, probes, workers
                )
        except BaseException:
            if started is not None:
                started.stop()  # training may have started before the failure: stop it
            raise
    for bar in bars.values():
        bar.close()
    if out is not None:
        write_tables(out, results, run_ids, history, texts)
    return Logged(parent.run_id, results, run_ids, history)


def _train_while_logging(parent, logger, bars, train, runs, splits, execution, probes, workers):
    """Step 3 and 4 of the module doc inside the open parent run: train, each shard's
    results logged as they come; then the sweep's tables on the parent, the loggers'
    end, the landing view. Returns (results, history frame, {run_key: child run id},
    the texts of history.csv and diagnostics.json)."""
    start = _now_ms()  # the runs' start: training shards run side by side

    def log(results):  # each shard as soon as it is trained, in chunks
        bars["train"].update(len(results))
        for i in range(0, len(results), LOG_CHUNK):
            logger.submit(results[i : i + LOG_CHUNK], start, _now_ms())
        bars["log"].update(logger.poll())

    results = train(runs, splits, execution, on_results=log, probes=probes, workers=workers)
    history = history_frame(results)
    # While the loggers finish: the sweep's tables on the parent run (the report's figures
    # are drawn by the aggregate stage; MLflow charts the children's curves).
    texts = sweep_texts(results, history)  # written once: for the parent and runs/
    parent.log_texts(texts)
    run_ids = logger.close()
    bars["log"].update(len(run_ids) - bars["log"].n)
    parent.log_view(runs, sweep_run.metric_names(results))  # the UI's landing view
    return results, history, run_ids, texts


class _NoBar:
    n = 0

    def update(self, k):
        self.n += k

    def close(self):
        pass


def _bars(sweep: str, total: int, show: bool) -> dict:
    if not show:
        return {"train": _NoBar(), "log": _NoBar()}
    from tqdm import tqdm

    return {
        k: tqdm(total=total, desc=f"{k} {sweep}", unit="run", position=i, leave=False)
        for i, k in enumerate(("train", "log"))
    }
