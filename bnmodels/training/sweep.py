"""Training a sweep: which engine, on which device, in which order (SPEC 1, 4)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from bnmodels.errors import StageError
from bnmodels.experiment.config import Execution, RunConfig
from bnmodels.experiment.data import Split
from bnmodels.training.result import RunResult


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise StageError(
            "params.yaml: execution.device is 'cuda', but torch sees no CUDA "
            "device; use 'auto' or 'cpu'"
        )
    return device


def start_sweep(
    runs: Sequence[RunConfig],
    splits: dict[tuple[str, str, int], Split],
    execution: Execution | None = None,
    probes: bool = False,
    workers: int = 1,
):
    """Start training in local worker processes (a `parallel.ShardPool`) when `workers`
    and the shards allow, so that the caller prepares logging meanwhile; else None (then
    `train_sweep` trains in this process)."""
    from bnmodels.training import parallel

    execution = execution or Execution()
    device = resolve_device(execution.device) if execution.engine == "batched" else "cpu"
    cut = parallel.shards(runs, [splits[r.data_key] for r in runs], execution.engine, device)
    if workers <= 1 or len(cut) <= 1:
        return None
    torch.set_num_threads(execution.threads)
    return parallel.ShardPool(
        runs,
        splits,
        cut,
        min(workers, len(cut)),
        engine=execution.engine,
        device=device,
        dtype_name=execution.dtype,
        threads=execution.threads,
        probes=probes,
    )


def train_sweep(
    runs: Sequence[RunConfig],
    splits: dict[tuple[str, str, int], Split],
    execution: Execution | None = None,
    on_results: Callable[[list[RunResult]], None] | None = None,
    probes: bool = False,
    workers: int = 1,
    started=None,
) -> list[RunResult]:
    """Train a sweep's runs with the engine `execution` names; results in run order.

    The runs are cut into shards (`bnmodels.training.parallel`), trained here when
    `workers` is 1 and in that many local processes otherwise (`started`: those
    processes, already started by `start_sweep` with the same arguments); the numbers are
    the same either way, bit for bit. `on_results` receives results as they are ready (a
    shard at a time), so that the caller can log them while the next ones train;
    `probes` records the loss-landscape probes (the sweep's `probes: true`).
    """
    from bnmodels.training import parallel

    started = started or start_sweep(runs, splits, execution, probes, workers)
    if started is not None:
        return started.results(on_results)
    execution = execution or Execution()
    torch.set_num_threads(execution.threads)
    dtype = getattr(torch, execution.dtype)
    device = resolve_device(execution.device) if execution.engine == "batched" else "cpu"
    datas = [splits[r.data_key] for r in runs]  # (data set, normalization, draw)
    out: list = [None] * len(runs)
    for shard in parallel.shards(runs, datas, execution.engine, device):
        results = parallel.train_shard(
            [runs[i] for i in shard],
            [datas[i] for i in shard],
            execution.engine,
            device,
            dtype,
            probes,
        )
        for i, r in zip(shard, results, strict=True):
            out[i] = r
        if on_results:
            on_results(results)
    return out
