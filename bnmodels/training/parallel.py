"""A sweep cut into shards, trained side by side in local worker processes.

A *shard* is a list of runs that one worker trains as one computation: on a CPU at most
`SHARD_RUNS` runs of one group (equal `batched.group_key`), on a GPU a whole group (a GPU
wants the widest computation it can get). A run's numbers do not depend on its company,
bit for bit (`batched.RUN_PAD`), so neither the cut nor the number of workers changes any
number; the cut depends on the runs and the device only, never on the workers.

Why at most 64 runs on a CPU: a batched step costs a fixed overhead plus work per run,
and past a few dozen runs the work per run grows again (the group's tensors outgrow
the caches), so 64-run shards cost about what a whole group costs on one core while
giving every core its own work (measurements: benchmarks/results/parallel.txt).

The pool is `bnmodels.pools.fork_pool`. On a CPU its workers are forked, so they start
in milliseconds with the engine imported (a forkserver start costs seconds a stage);
`tracking.train_and_log` starts them before it imports MLflow, so they inherit no store
connection or logging thread, and nothing has trained in the caller (no OpenMP pool to
copy). CUDA cannot be forked once initialized, so on a GPU the workers start from a
clean forkserver process. The workers ignore SIGINT (Ctrl-C reaches the whole process
group; only the caller decides); on any exception there (Ctrl-C, SIGTERM as SystemExit,
a failed shard) the caller kills its workers before it unwinds (`pools.kill_pool`), so
none is left training and a killed worker has written nothing (results only travel
back whole, through the pool's pipe).
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from bnmodels.experiment.config import RunConfig
from bnmodels.experiment.data import Split
from bnmodels.pools import finishing, fork_pool, kill_pool
from bnmodels.training.result import RunResult

SHARD_RUNS = 64  # runs per shard on a CPU (module doc); a multiple of batched.RUN_PAD
REFERENCE_SHARD_RUNS = 8  # the reference engine trains one run at a time anyway


def auto_workers(cores: int, threads: int = 1) -> int:
    """`execution.workers: auto`: the cores minus what logging needs (a quarter of them,
    rounded down: none of 2 or 3 cores, where the loggers mostly wait on the store and
    share a core with training), divided by each worker's torch threads; at least 1."""
    return max(1, (cores - cores // 4) // max(1, threads))


STEP_OVERHEAD = 30_000  # a layer's fixed cost per step, in multiply-adds of one run


def run_cost(cfg: RunConfig, data: Split) -> int:
    """SGD steps of one run (its epochs of batches, or its steps budget)."""
    n_train, rows = data.x_train.shape[0], cfg.batch_size
    batches = sum(1 for s in range(0, n_train, rows) if min(s + rows, n_train) - s >= 2)
    return cfg.steps or cfg.epochs * batches


def _macs(cfg: RunConfig, data: Split) -> int:
    """Multiply-adds of one example's forward pass through a run's net."""
    sizes = [data.x_train.shape[1], *[cfg.width] * cfg.depth, max(1, data.num_class)]
    return sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))


def shard_cost(
    runs: Sequence[RunConfig], datas: Sequence[Split], engine: str = "batched", device="cpu"
) -> int:
    """Work of one shard, for scheduling: steps times, per layer, a fixed cost plus the
    multiply-adds of the runs computed (a batched group's padded runs: `run_pad`; the
    reference engine's runs one by one).

    STEP_OVERHEAD is fitted on the width sweep's groups (a step at width 4 is overhead, at
    256 multiply-adds); counting steps and layers alone scheduled a 256-unit shard like a
    4-unit one.
    """

    def one(c: RunConfig, d: Split, computed: int) -> int:
        return run_cost(c, d) * ((c.depth + 1) * STEP_OVERHEAD + computed * _macs(c, d))

    if engine != "batched":
        return sum(one(c, d, 1) for c, d in zip(runs, datas, strict=True))
    from bnmodels.training.batched import run_pad

    pad = run_pad(runs, datas, device)
    return one(runs[0], datas[0], -(-len(runs) // pad) * pad)


def shards(
    runs: Sequence[RunConfig], datas: Sequence[Split], engine: str = "batched", device="cpu"
) -> list[list[int]]:
    """The runs' indices cut into shards (module doc), the costliest first (the longest
    shards start first, so the workers finish together). Independent of the workers."""
    from bnmodels.training.batched import group_key

    groups: dict[tuple, list[int]] = {}
    for i, (c, d) in enumerate(zip(runs, datas, strict=True)):
        key = group_key(c, d) if engine == "batched" else ()
        groups.setdefault(key, []).append(i)
    size = SHARD_RUNS if engine == "batched" else REFERENCE_SHARD_RUNS
    out = []
    for idx in groups.values():
        if engine == "batched" and str(device).startswith("cuda"):
            out.append(idx)
            continue
        n = math.ceil(len(idx) / size)
        out += [idx[k * size : (k + 1) * size] for k in range(n)]

    def cost(shard):
        return shard_cost([runs[i] for i in shard], [datas[i] for i in shard], engine, device)

    return sorted(out, key=cost, reverse=True)


def portable(result) -> RunResult:
    """A small picklable copy of a result: its own numpy arrays, not its group's tensors."""
    state = result.state_dict
    return RunResult(
        result.config,
        {k: np.asarray(v).copy() for k, v in result.history.items()},
        bool(result.diverged),
        {
            k: v.detach().cpu().numpy().copy() if hasattr(v, "detach") else np.array(v)
            for k, v in state.items()
        },
        result.final,
        dict(result.precise_bn),
        dict(result.baseline),
    )


def train_shard(
    runs: Sequence[RunConfig],
    datas: Sequence[Split],
    engine: str,
    device: str,
    dtype,
    probes: bool,
) -> list:
    """Train one shard's runs with the engine named; results in the runs' order."""
    if engine == "reference":
        from bnmodels.training.reference import train_reference

        return [
            train_reference(r, d, dtype=dtype, probes=probes)
            for r, d in zip(runs, datas, strict=True)
        ]
    from bnmodels.training.batched import train_runs

    return train_runs(runs, datas, device, dtype, probes=probes)


_SPLITS: dict = {}  # a worker's copy of the sweep's data, set once by _init


def _init(splits_pickle: bytes, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _SPLITS.update(pickle.loads(splits_pickle))


def _work(runs: list[RunConfig], engine: str, device: str, dtype_name: str, probes: bool):
    import torch

    datas = [_SPLITS[r.data_key] for r in runs]
    results = train_shard(runs, datas, engine, device, getattr(torch, dtype_name), probes)
    return [portable(r) for r in results]


class ShardPool:
    """Shards training in local worker processes: started (forked, all shards submitted)
    on construction, so that the caller can prepare logging meanwhile; `results` collects
    them, `stop` kills the workers (also on any exception inside `results`)."""

    def __init__(
        self,
        runs: Sequence[RunConfig],
        splits: dict[tuple[str, str, int], Split],
        cut: Iterable[list[int]],
        workers: int,
        *,
        engine: str = "batched",
        device: str = "cpu",
        dtype_name: str = "float32",
        threads: int = 1,
        probes: bool = False,
    ):
        import multiprocessing

        cuda = device.startswith("cuda")
        if cuda:
            multiprocessing.get_context("forkserver").set_forkserver_preload(
                ["bnmodels.training.parallel", "bnmodels.training.batched"]
            )
        cut = list(cut)
        used = {runs[i].data_key for shard in cut for i in shard}
        data = pickle.dumps({k: splits[k] for k in used})
        self.n = len(runs)
        start = "forkserver" if cuda else "fork"
        self.pool = fork_pool(workers, _init, (data, threads), start)
        try:
            self.pending = {
                self.pool.submit(
                    _work, [runs[i] for i in shard], engine, device, dtype_name, probes
                ): shard
                for shard in cut
            }
        except BaseException:
            self.stop()
            raise

    def results(
        self, on_results: Callable[[list[RunResult]], None] | None = None
    ) -> list[RunResult]:
        """Every shard's results, in run order; `on_results` gets each shard's as it
        completes."""
        from concurrent.futures import FIRST_COMPLETED, wait

        out: list[RunResult | None] = [None] * self.n
        with finishing(self.pool):
            while self.pending:
                done, _ = wait(self.pending, return_when=FIRST_COMPLETED)
                for future in done:
                    shard = self.pending.pop(future)
                    results = future.result()
                    for i, r in zip(shard, results, strict=True):
                        out[i] = r
                    if on_results:
                        on_results(results)
        return out

    def stop(self) -> None:
        """Kill the workers now (what they were training is lost, nothing half-written:
        results only travel back whole)."""
        kill_pool(self.pool)
