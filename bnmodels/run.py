"""What one run is to everything downstream: its batches, its history columns, its result.

Both engines (`train.py`, `engine.py`) produce results with these attributes, and the
tables, the tracker and the report read them; so the contract lives apart from all of
them (SPEC 4 and 5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from bnmodels.config import RunConfig


def history_columns(depth: int) -> list[str]:
    """Per-epoch columns of a run's history, in order (layer 1 is the first hidden Linear,
    layer depth+1 the output Linear)."""
    layers = range(1, depth + 2)
    return (
        ["train_mse", "test_mse"]
        + [f"weight_std_l{i}" for i in layers]
        + [f"grad_std_l{i}" for i in layers]
        + ["dead_fraction"]
    )


def batch_slices(n_train: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch in an epoch; a last batch of one row is skipped (SPEC 4)."""
    return [
        (s, min(s + batch_size, n_train))
        for s in range(0, n_train, batch_size)
        if min(s + batch_size, n_train) - s >= 2
    ]


class RunMetrics:
    """Summary numbers of a run, from its `history`."""

    history: dict[str, np.ndarray]

    @property
    def final_train_mse(self) -> float:
        return float(self.history["train_mse"][-1])

    @property
    def final_test_mse(self) -> float:
        return float(self.history["test_mse"][-1])

    @property
    def best_test_mse(self) -> float:
        t = self.history["test_mse"]
        return float(np.nanmin(t)) if np.isfinite(t).any() else math.nan


@dataclass
class RunResult(RunMetrics):
    """What one run produced; `history[col]` has one value per epoch (NaN once diverged).

    The batched engine returns objects with the same attributes, built lazily.
    """

    config: RunConfig
    history: dict[str, np.ndarray]
    diverged: bool
    state_dict: dict[str, torch.Tensor]  # final weights; loads into build_model(config, ...)
    # End-of-training diagnostics: per BN layer running_mean/running_var, per Linear the
    # last step's weight gradient (what the course's weights_vp draws).
    final: dict[str, list[list[float]]] = field(default_factory=dict)
