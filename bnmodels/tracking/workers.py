"""Child runs logged by forked worker processes while the caller trains.

MLflow's client is Python that holds the GIL (SQLAlchemy, JSON, HTTP), so a thread beside
the training would only take turns with it; forked processes log on the other cores.
Several workers help when the store takes concurrent writers (a tracking server,
PostgreSQL); a SQLite file takes one writer at a time, so it gets one.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bnmodels.tracking.store import TrackingError, accepts_concurrent_writers
from bnmodels.training.parallel import portable

if TYPE_CHECKING:
    from bnmodels.tracking.sweep_run import SweepRun
    from bnmodels.training.result import RunResult

MAX_AUTO_WORKERS = 8
STOP_GRACE_S = 5.0  # on an interruption: time for a worker to mark its child run KILLED


def log_workers(setting: str | int, uri: str, training_threads: int = 1) -> int:
    """How many logging processes: `setting` if a number, else (`auto`) one for a store
    that takes one writer (SQLite), and the cores left after training for the others
    (at least 1, at most 8)."""
    if setting != "auto":
        return int(setting)
    if not accepts_concurrent_writers(uri):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_AUTO_WORKERS, (cores or 1) - training_threads))


def _worker(parent: SweepRun, in_features: dict, tasks, done) -> None:
    import torch

    torch.set_num_threads(1)
    store = getattr(getattr(parent.client, "_tracking_client", None), "store", None)
    if getattr(store, "engine", None) is not None:
        store.engine.dispose(close=False)  # SQLAlchemy's rule after a fork: own connections

    def term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, term)
    with contextlib.suppress(KeyboardInterrupt, SystemExit):  # Ctrl-C reaches us too
        while (task := tasks.get()) is not None:
            chunk, start_ms, end_ms = task
            try:
                done.put(parent.log_results(chunk, in_features, start_ms=start_ms, end_ms=end_ms))
            except BaseException as e:  # a child run being logged is already marked
                done.put(f"{type(e).__name__}: {e}")
                if isinstance(e, TrackingError):
                    return  # the caller reports it; a traceback here would only repeat it
                raise


class ForkedLogger:
    """Logs child runs into an open parent run (`open_sweep_run`) from forked processes.

    `submit(results, start_ms, end_ms)` queues them and returns at once; `poll()` returns
    how many runs were logged since the last call; `close()` waits for the rest and
    returns {run_key: child run id}. As a context manager it stops the workers on an
    exception (SIGTERM: a worker marks its open child run KILLED).
    """

    def __init__(self, parent: SweepRun, in_features: Mapping[str, int], workers: int = 1):
        import multiprocessing

        ctx = multiprocessing.get_context("fork")  # no re-import: starts in milliseconds
        self.tasks, self.done = ctx.Queue(), ctx.Queue()
        args = (parent, dict(in_features), self.tasks, self.done)
        self.procs = [
            ctx.Process(target=_worker, args=args, daemon=True, name=f"mlflow-log-{i}")
            for i in range(max(1, workers))
        ]
        for p in self.procs:
            p.start()
        self.pending, self.run_ids, self.abandoned = 0, dict(parent.run_ids), False

    def submit(self, results: Sequence[RunResult], start_ms: int, end_ms: int) -> None:
        self.tasks.put(([portable(r) for r in results], start_ms, end_ms))
        self.pending += 1

    def _collect(self, block: bool) -> int:
        n = 0
        while self.pending:
            try:
                got = self.done.get(timeout=1.0) if block else self.done.get_nowait()
            except queue.Empty:
                if not block:
                    break
                if not any(p.is_alive() for p in self.procs):
                    self._abandon()
                    raise TrackingError("the MLflow logging process died") from None
                continue
            if isinstance(got, str):
                self._abandon()
                raise TrackingError(f"logging child runs failed: {got}")
            self.pending -= 1
            self.run_ids.update(got)
            n += len(got)
        return n

    def poll(self) -> int:
        n = self._collect(block=False)
        if self.pending and not any(p.is_alive() for p in self.procs):
            n += self._collect(block=True)  # its last answers, then the error
        return n

    def _abandon(self) -> None:
        """Give up on queued chunks: a queue's feeder thread blocked on a full pipe that
        nobody reads would otherwise keep this process from ever exiting."""
        if not self.abandoned:
            self.abandoned = True
            self.tasks.cancel_join_thread()
            self.tasks.close()

    def close(self) -> dict[str, str]:
        self._collect(block=True)
        for _ in self.procs:
            self.tasks.put(None)
        self._stop(grace_s=60)
        return self.run_ids

    def _stop(self, grace_s: float, terminate: bool = False) -> None:
        """Join the workers within `grace_s` (SIGTERM first if `terminate`), then kill
        what is left. Never an unbounded wait: a worker blocked on exit (its result
        queue's feeder thread flushing into a pipe nobody reads any more) would otherwise
        hold this process at exit, where multiprocessing joins its children untimed."""
        alive = [p for p in self.procs if p.is_alive()]
        if terminate:
            for p in alive:
                p.terminate()
        deadline = time.monotonic() + grace_s
        for p in alive:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in alive:
            if p.is_alive():
                p.kill()
                p.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        alive = [p for p in self.procs if p.is_alive()]
        if alive and exc_type is None:
            self.close()
        elif exc_type is not None:
            self._abandon()
            self._stop(grace_s=STOP_GRACE_S, terminate=True)
