"""Forked worker pools that can be stopped at once: the one way this package runs work
on every local core (training shards, the report's figures).

`fork_pool` is `concurrent.futures.ProcessPoolExecutor` with forked workers that ignore
SIGINT: Ctrl-C in a terminal reaches the whole process group, and only the caller
decides; forked, a worker inherits what the caller built (the engine imported, the
figures' data) and starts in milliseconds. `kill_pool` kills the workers now, whatever
they are doing (on Ctrl-C, SIGTERM or a failure in the caller), and drops queued work:
Python 3.11's executor offers no public way to stop a worker mid-task (3.14 adds
`terminate_workers`), so this is the one hand-written part.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor


def available_cores() -> int:
    """The cores this process may run on (its affinity, e.g. a container's CPU set)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _start(initializer: Callable | None, initargs: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller handles Ctrl-C (module doc)
    if initializer is not None:
        initializer(*initargs)


def one_blas_thread() -> None:
    """numpy's OpenBLAS at one thread in this process and the workers it forks, unless the
    user set OPENBLAS_NUM_THREADS.

    By default OpenBLAS keeps a busy-waiting thread per core after its first product, and
    those threads fight a pool's workers for the cores (two calibration workers ran slower
    than one: docs/performance.md). The products here are small, so one thread loses
    nothing, and the numbers are the same. The variable reaches a numpy loaded later (and
    a forkserver's workers); threadpoolctl, the one loaded already.
    """
    if os.environ.get("OPENBLAS_NUM_THREADS", "1") != "1":
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


def fork_pool(
    workers: int,
    initializer: Callable | None = None,
    initargs: tuple = (),
    start_method: str = "fork",
) -> ProcessPoolExecutor:
    """A pool of `workers` processes started with `start_method` (module doc), numpy's
    BLAS at one thread in them and in the caller (`one_blas_thread`)."""
    one_blas_thread()
    ctx = multiprocessing.get_context(start_method)
    return ProcessPoolExecutor(workers, ctx, initializer=_start, initargs=(initializer, initargs))


def kill_pool(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's workers now and drop its queued work (module doc).

    The executor's shutdown joins the thread that feeds its task pipe; a feeder blocked
    writing into that pipe (full, its readers killed) is only freed when every process
    holding the pipe's read end has closed it (CPython gh-107219, fixed on Windows only),
    and any process forked after the pool holds one. So the join is cancelled first: the
    feeder is a daemon thread, dropped at exit with the work nobody will do."""
    call_queue = getattr(pool, "_call_queue", None)
    if call_queue is not None:
        call_queue.cancel_join_thread()
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        if p.is_alive():
            p.kill()
    pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def finishing(pool: ProcessPoolExecutor) -> Iterator[ProcessPoolExecutor]:
    """Wait for `pool`'s work in the block: on any exception there (a failed task,
    Ctrl-C, SIGTERM as SystemExit) its workers are killed before it propagates, none
    left working; when the block ends, the pool shuts down."""
    try:
        yield pool
    except BaseException:
        kill_pool(pool)
        raise
    pool.shutdown(wait=True)
