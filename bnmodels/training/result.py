"""What one run is to everything downstream: its batches, its history columns, its result.

Both engines (`reference`, `batched`) produce results with these attributes, and the
tables, the tracker and the report read them; so the contract lives apart from all of
them (SPEC 4 and 5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from bnmodels import columns
from bnmodels.experiment.config import RunConfig

if TYPE_CHECKING:
    import torch

# The column names live in bnmodels.columns; these names are its, for the engines.
REGRESSION_METRICS = columns.REGRESSION_METRICS
CLASSIFICATION_METRICS = columns.CLASSIFICATION_METRICS
SUMMARY_COLUMNS = columns.SUMMARY
PROBE_COLUMNS = columns.PROBES
metric_columns = columns.metric_columns
history_columns = columns.history_columns


def batch_slices(n_train: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch in an epoch; a last batch of one row is skipped (SPEC 4).
    There are `config.batches_per_epoch(n_train, batch_size)` of them."""
    return [
        (s, min(s + batch_size, n_train))
        for s in range(0, n_train, batch_size)
        if min(s + batch_size, n_train) - s >= 2
    ]


class RunMetrics:
    """Summary numbers of a run, from its `history`; NaN for a column of the other kind
    (a regression run has no accuracy)."""

    history: dict[str, np.ndarray]

    def _final(self, column: str) -> float:
        return float(self.history[column][-1]) if column in self.history else math.nan

    def _best(self, column: str, best) -> float:
        t = self.history.get(column)
        return float(best(t)) if t is not None and np.isfinite(t).any() else math.nan

    @property
    def final_train_mse(self) -> float:
        return self._final("train_mse")

    @property
    def final_test_mse(self) -> float:
        return self._final("test_mse")

    @property
    def best_test_mse(self) -> float:
        return self._best("test_mse", np.nanmin)

    @property
    def final_train_ce(self) -> float:
        return self._final("train_ce")

    @property
    def final_test_ce(self) -> float:
        return self._final("test_ce")

    @property
    def final_test_accuracy(self) -> float:
        return self._final("test_accuracy")

    @property
    def best_test_accuracy(self) -> float:
        return self._best("test_accuracy", np.nanmax)

    precise_bn: dict[str, float]
    baseline: dict[str, float]

    def summary(self) -> dict[str, float]:
        """runs.csv's summary columns (SPEC 5); `..._precise_bn`: the test metrics with
        precise BN statistics (NaN without BN); `baseline_...`: the constant predictor's
        numbers on the run's data (baseline.py; NaN for the other kind)."""
        out = {}
        for c in SUMMARY_COLUMNS:
            if c.startswith("baseline_"):
                out[c] = self.baseline.get(c, math.nan)
            elif c.endswith("_precise_bn"):
                metric = c.removeprefix("final_test_").removesuffix("_precise_bn")
                out[c] = self.precise_bn.get(metric, math.nan)
            else:
                out[c] = getattr(self, c)
        return out


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
    # Test metrics with precise BN statistics ("mse" or "ce", "accuracy"); empty without BN.
    precise_bn: dict[str, float] = field(default_factory=dict)
    # The constant predictor's numbers on the run's own data (baseline.py).
    baseline: dict[str, float] = field(default_factory=dict)
