"""A sweep's shards as tasks on an existing Ray cluster (`execution.cluster: ray`).

The cluster is the user's (`ray start --head`, then `ray start --address=...` on each other
machine, docs/scaling.md); its address comes from `execution.address` or RAY_ADDRESS and
is never a dependency of a stage. The sweep's data go through Ray's object store once;
each shard (`bnmodels.training.parallel.shards`) is a task that returns its results whole,
with a GPU per task where the cluster has GPUs and `execution.device` allows one, and
Ray's own retries (`MAX_RETRIES`) when a node is lost: a shard's results come back once,
so each run is logged once. Only this path imports ray.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence

from bnmodels.errors import StageError
from bnmodels.experiment.config import Execution, RunConfig
from bnmodels.experiment.data import Split
from bnmodels.training.result import RunResult

MAX_RETRIES = 3  # a shard's task is retried this often when its node dies
CONNECT_TIMEOUT_S = 5.0


def _probe(address: str) -> None:
    """Fail fast with the address when nothing listens there (ray.init would retry for a
    minute): `host:port`, or `ray://host:port` for Ray Client."""
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise StageError(f"execution.address {address!r}: expected host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise StageError(f"the Ray cluster at {address} is not reachable: {e}") from None


def _work(splits, runs, engine, device, dtype_name, probes, threads):
    import torch

    from bnmodels.training.parallel import portable, train_shard

    torch.set_num_threads(threads)
    datas = [splits[r.data_key] for r in runs]
    results = train_shard(runs, datas, engine, device, getattr(torch, dtype_name), probes)
    return [portable(r) for r in results]


class RayCluster:
    """A connection to a running Ray cluster; `connect` first."""

    def __init__(self, ray, address: str):
        self.ray, self.address = ray, address

    @classmethod
    def connect(cls, address: str = "") -> RayCluster:
        """Connect to the cluster at `address` (else RAY_ADDRESS); a StageError naming the
        address when there is none, ray is not installed, or nothing answers there."""
        address = address or os.environ.get("RAY_ADDRESS", "")
        if not address:
            raise StageError(
                "params.yaml: execution.cluster is 'ray' but no cluster is named: set "
                "execution.address or RAY_ADDRESS (docs/scaling.md)"
            )
        try:
            import ray
        except ImportError:
            raise StageError(
                "execution.cluster is 'ray' but ray is not installed: pip install -e '.[ray]'"
            ) from None
        _probe(address)
        try:
            if not ray.is_initialized():
                ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except Exception as e:
            raise StageError(f"the Ray cluster at {address} is not reachable: {e}") from None
        return cls(ray, address)

    def workers(self) -> int:
        """The cluster's CPUs: how many shards train at once."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def gpus(self) -> int:
        return int(self.ray.cluster_resources().get("GPU", 0))

    def train_sweep(
        self,
        runs: Sequence[RunConfig],
        splits: dict[tuple[str, str, int], Split],
        execution: Execution | None = None,
        on_results: Callable[[list[RunResult]], None] | None = None,
        probes: bool = False,
        workers: int = 1,
    ) -> list[RunResult]:
        """As `training.sweep.train_sweep`, each shard a Ray task; results in run order."""
        from bnmodels.training.parallel import shards

        ray, execution = self.ray, execution or Execution()
        gpu = execution.engine == "batched" and execution.device != "cpu" and self.gpus() > 0
        if execution.device == "cuda" and not gpu:
            raise StageError(
                f"execution.device is 'cuda', but the Ray cluster at {self.address} has no GPU"
            )
        device = "cuda" if gpu else "cpu"
        datas = [splits[r.data_key] for r in runs]
        task = ray.remote(_work).options(
            num_cpus=execution.threads, num_gpus=1 if gpu else 0, max_retries=MAX_RETRIES
        )
        data = ray.put({k: splits[k] for k in {r.data_key for r in runs}})
        out: list[RunResult | None] = [None] * len(runs)
        pending = {
            task.remote(
                data,
                [runs[i] for i in shard],
                execution.engine,
                device,
                execution.dtype,
                probes,
                execution.threads,
            ): shard
            for shard in shards(runs, datas, execution.engine, device)
        }
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                shard = pending.pop(done[0])
                results = ray.get(done[0])
                for i, r in zip(shard, results, strict=True):
                    out[i] = r
                if on_results:
                    on_results(results)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return out
