"""Training a sweep: which engine, on which device, in which order (SPEC 1, 4)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from bnmodels.errors import StageError
from bnmodels.experiment.config import Execution, RunConfig
from bnmodels.experiment.data import Split
from bnmodels.training.reference import train_reference
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


def train_sweep(
    runs: Sequence[RunConfig],
    splits: dict[tuple[str, str, int], Split],
    execution: Execution | None = None,
    on_results: Callable[[list[RunResult]], None] | None = None,
    probes: bool = False,
) -> list[RunResult]:
    """Train a sweep's runs with the engine `execution` names; results in run order.

    `on_results` receives results as they are ready (a group at a time when batched), so
    that the caller can log them while the next ones train; `probes` records the
    loss-landscape probes (the sweep's `probes: true`).
    """
    execution = execution or Execution()
    torch.set_num_threads(execution.threads)
    dtype = getattr(torch, execution.dtype)
    datas = [splits[r.data_key] for r in runs]  # (data set, normalization, draw)
    if execution.engine == "reference":
        out = []
        for r, d in zip(runs, datas, strict=True):
            out.append(train_reference(r, d, dtype=dtype, probes=probes))
            if on_results:
                on_results(out[-1:])
        return out
    from bnmodels.training.batched import train_runs

    device = resolve_device(execution.device)
    return train_runs(runs, datas, device, dtype, on_results, probes=probes)
