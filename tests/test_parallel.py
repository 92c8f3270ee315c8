"""Shards in local worker processes: the same numbers whatever the workers, each run
logged once, the tables written and read back by one pair of functions."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pandas as pd
import pytest
import torch
from configs import quad2_spec, run_config

from bnmodels.experiment.config import Execution
from bnmodels.experiment.data import generate
from bnmodels.tracking.train_and_log import train_and_log, workers_for
from bnmodels.training import parallel
from bnmodels.training.batched import group_key, train_runs
from bnmodels.training.sweep import train_sweep
from bnmodels.training.tables import history_frame, read_tables, runs_frame, write_tables

torch.set_num_threads(1)

SPEC = quad2_spec(name="quad2", num_examples=40)
LRS = (0.01, 0.03, 0.1, 0.3, 1.0, 30.0, 1000.0)  # the last ones diverge


@pytest.fixture(scope="module")
def split():
    return generate(SPEC)


@pytest.fixture(scope="module")
def sweep(split):
    """A group of 77 runs (more than a shard: SHARD_RUNS is 64), one of 6 runs of another
    shape, and 4 runs with BN: diverging runs, BN and plain runs side by side."""
    big = [
        run_config(lr=lr, seed=s, bn="pre" if s % 3 else "none") for lr in LRS for s in range(11)
    ]
    small = [run_config(depth=2, activation="tanh", seed=s) for s in range(6)]
    runs = small[:3] + big + small[3:]
    return runs, {runs[0].data_key: split}


def computed(frame: pd.DataFrame) -> pd.DataFrame:
    """Every computed column: all but the MLflow ids (and no times are in the tables)."""
    return frame.drop(columns=["mlflow_run_id"], errors="ignore")


def test_shards_cover_every_run_once_within_one_group_and_at_most_64_runs(sweep, split):
    runs, _ = sweep
    cut = parallel.shards(runs, [split] * len(runs))
    assert sorted(i for shard in cut for i in shard) == list(range(len(runs)))
    assert sorted(map(len, cut)) == [6, 13, 64]
    for shard in cut:
        assert len({group_key(runs[i], split) for i in shard}) == 1
    on_gpu = parallel.shards(runs, [split] * len(runs), device="cuda")
    assert sorted(map(len, on_gpu)) == [6, 77]  # a whole group each


def test_shards_start_costliest_first_and_wide_nets_cost_more(split):
    """The width sweep's shards: 256 units a layer is ~60x the multiply-adds of 16, so its
    shards start first (counting steps alone started the 4-unit group first)."""
    runs = [
        run_config(width=w, bn=b, seed=s, depth=2)
        for w in (4, 16, 64, 256)
        for b in ("none", "pre")
        for s in range(10)
    ]
    cut = parallel.shards(runs, [split] * len(runs))
    widths = [runs[shard[0]].width for shard in cut]
    assert widths[:2] == [256, 256] and widths[-1] == 4
    costs = [parallel.shard_cost([runs[i] for i in s], [split] * len(s)) for s in cut]
    assert costs == sorted(costs, reverse=True)


def test_auto_workers_leave_a_quarter_of_the_cores_to_logging():
    assert [parallel.auto_workers(c) for c in (1, 2, 3, 4, 8, 16)] == [1, 2, 3, 3, 6, 12]
    assert parallel.auto_workers(16, threads=4) == 3
    assert workers_for(Execution(workers=5), cores=2) == 5
    assert workers_for(Execution(), cores=8) == 6
    assert workers_for(Execution(), cores=8, device="cuda") == 1


def test_tables_are_identical_in_every_computed_column_across_1_2_and_3_workers(sweep, split):
    runs, splits = sweep
    tables = []
    for workers in (1, 2, 3):
        results = train_sweep(runs, splits, Execution(), workers=workers)
        assert [r.config for r in results] == runs  # run order, whatever finished first
        tables.append((computed(runs_frame(results)), history_frame(results)))
    # the independent computation: each group trained whole, as one batch, unsharded
    whole = train_runs(runs, [split] * len(runs))
    expected = (computed(runs_frame(whole)), history_frame(whole))
    assert expected[0]["diverged"].any() and not expected[0]["diverged"].all()
    for got in tables:
        pd.testing.assert_frame_equal(got[0], expected[0], check_exact=True)
        pd.testing.assert_frame_equal(got[1], expected[1], check_exact=True)


def test_the_reference_engine_in_workers_gives_its_own_numbers(sweep, split):
    runs, splits = sweep
    some = runs[:2] + runs[40:50]
    one = train_sweep(some, splits, Execution(engine="reference"), workers=1)
    two = train_sweep(some, splits, Execution(engine="reference"), workers=2)
    pd.testing.assert_frame_equal(history_frame(one), history_frame(two), check_exact=True)


def test_tables_read_back_as_written_with_an_empty_cell_the_only_na(tmp_path, sweep, split):
    runs, splits = sweep
    odd = [replace(r, dataset="NA") for r in runs[:3]]  # a data set named like pandas' NA
    results = train_sweep(odd, {odd[0].data_key: split}, Execution())
    write_tables(tmp_path / "out", results, {odd[0].run_key: "abc"})
    got_runs, got_history = read_tables(tmp_path / "out")
    assert list(got_runs["dataset"]) == ["NA"] * 3
    assert list(got_runs["mlflow_run_id"].fillna("")) == ["abc", "", ""]
    history = history_frame(results)
    assert got_history.shape == history.shape
    assert got_history["dead_fraction"].isna().all()  # sigmoid: no dead units, NaN written
    pd.testing.assert_frame_equal(
        got_history.drop(columns="run_key"), history.drop(columns="run_key"), check_dtype=False
    )


def test_train_and_log_with_2_workers_logs_each_run_exactly_once(tmp_path, sweep):
    runs, splits = sweep
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    done = train_and_log(
        "par", runs, splits, execution=Execution(workers=2), uri=uri, out=tmp_path / "runs"
    )
    got, _ = read_tables(tmp_path / "runs")
    assert list(got["run_key"]) == [r.run_key for r in runs]
    assert set(got["mlflow_run_id"]) == set(done.run_ids.values())
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        rows = db.execute(
            "SELECT t.value, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid"
            " WHERE t.key = 'run_key' AND r.lifecycle_stage = 'active'"
        ).fetchall()
    assert sorted(k for k, _ in rows) == sorted(r.run_key for r in runs)
    diverged = dict(zip(got["run_key"], got["diverged"], strict=True))
    assert {k: s == "FAILED" for k, s in rows} == diverged


def test_a_dead_store_stops_the_workers_already_training_and_opens_no_run(sweep):
    import multiprocessing
    import socket

    from bnmodels.tracking.store import TrackingError

    with socket.socket() as s:  # a free port: nothing listens there
        s.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{s.getsockname()[1]}"
    runs, splits = sweep
    before = set(multiprocessing.active_children())
    with pytest.raises(TrackingError, match=uri):
        train_and_log("dead", runs, splits, execution=Execution(workers=2), uri=uri)
    assert set(multiprocessing.active_children()) == before  # no worker left training


def test_a_worker_killed_mid_sweep_fails_the_sweep_and_stops_the_others(sweep):
    import multiprocessing
    import os
    import signal
    from concurrent.futures.process import BrokenProcessPool

    from bnmodels.training.sweep import start_sweep

    runs, splits = sweep
    before = set(multiprocessing.active_children())
    started = start_sweep(runs, splits, Execution(), workers=2)
    victim = next(iter(started.pool._processes.values()))
    os.kill(victim.pid, signal.SIGKILL)  # e.g. the kernel's OOM killer
    got = []
    with pytest.raises(BrokenProcessPool):
        train_sweep(runs, splits, Execution(), on_results=got.append, workers=2, started=started)
    assert sum(map(len, got)) < len(runs)  # nothing claims the sweep finished
    assert set(multiprocessing.active_children()) == before
