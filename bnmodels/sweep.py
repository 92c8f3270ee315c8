"""A sweep from plan to results: which runs, on which data, trained by which engine."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from bnmodels.config import Execution, Params, ParamsError, RunConfig, used_pairs
from bnmodels.data import Split, load_split
from bnmodels.train import RunResult, train_reference

PLAN_VERSION = 1


def data_file(processed: Path, dataset: str, normalization: str) -> Path:
    """Where the normalize stage stores one (data set, normalization) pair."""
    return Path(processed) / dataset / f"{normalization}.pt"


def error_file(processed: Path, dataset: str, normalization: str) -> Path:
    """Where the normalize stage explains why a normalization is impossible."""
    return Path(processed) / dataset / f"{normalization}.error"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_plans(params: Params, processed: Path, file: str = "params.yaml") -> dict[str, dict]:
    """Each sweep's plan: its runs, axes, and the data files (with hashes) it trains on.

    A plan changes exactly when what its sweep computes changes, so a train stage that
    depends on its plan reruns exactly then (SPEC 1), whatever else changed in params.
    """
    errors, plans = [], {}
    for name, sweep in params.sweeps.items():
        data = {}
        for ds, norm in used_pairs(sweep):
            f, e = data_file(processed, ds, norm), error_file(processed, ds, norm)
            if f.exists():
                data[f"{ds}/{norm}"] = _md5(f)
            else:
                why = e.read_text().strip() if e.exists() else f"{f} is missing"
                key = "normalization" if "normalization" in sweep.axes else "dataset"
                errors.append(f"{file}: sweeps.{name}.{key}: {why}")
        plans[name] = {
            "plan_version": PLAN_VERSION,
            "sweep": name,
            "axes": {k: list(v) for k, v in sweep.axes.items()},
            "data_md5": data,
            "runs": [r.as_dict() for r in sweep.runs],
        }
    if errors:
        raise ParamsError(errors)
    return plans


def plan_text(plan: dict) -> str:
    """Canonical JSON: byte-stable, so an unchanged sweep leaves its plan's hash unchanged."""
    return json.dumps(plan, indent=1, sort_keys=True) + "\n"


def plan_hash(plan: dict) -> str:
    return hashlib.sha256(plan_text(plan).encode()).hexdigest()[:16]


def plan_runs(plan: dict) -> list[RunConfig]:
    return [RunConfig(**r) for r in plan["runs"]]


class StageError(RuntimeError):
    """A stage cannot run as asked (stale data, a missing device); says why and what to do."""


def load_plan_data(plan: dict, processed: Path) -> dict[tuple[str, str], Split]:
    """The splits a plan names, checked against the hashes it recorded."""
    out = {}
    for pair, md5 in plan["data_md5"].items():
        ds, norm = pair.split("/")
        f = data_file(processed, ds, norm)
        if not f.exists() or _md5(f) != md5:
            raise StageError(f"{f} is missing or changed since the plan was made; "
                             "run `dvc repro` (not a single stage) again")  # fmt: skip
        out[(ds, norm)] = load_split(f)
    return out


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise StageError("params.yaml: execution.device is 'cuda', but torch sees no CUDA "
                         "device; use 'auto' or 'cpu'")  # fmt: skip
    return device


def train_sweep(runs: Sequence[RunConfig], splits: dict[tuple[str, str], Split],
                execution: Execution | None = None,
                on_results: Callable[[list[RunResult]], None] | None = None
                ) -> list[RunResult]:  # fmt: skip
    """Train a sweep's runs with the engine `execution` names; results in run order.

    `on_results` receives results as they are ready (a group at a time when batched), so
    that the caller can log them while the next ones train.
    """
    execution = execution or Execution()
    torch.set_num_threads(execution.threads)
    dtype = getattr(torch, execution.dtype)
    datas = [splits[(r.dataset, r.normalization)] for r in runs]
    if execution.engine == "reference":
        out = []
        for r, d in zip(runs, datas, strict=True):
            out.append(train_reference(r, d, dtype=dtype))
            if on_results:
                on_results(out[-1:])
        return out
    from bnmodels.engine import train_runs

    return train_runs(runs, datas, resolve_device(execution.device), dtype, on_results)
