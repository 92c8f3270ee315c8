"""The constant predictor of a run's own data: what a model that ignores its inputs scores.

A run whose error sits at its baseline has learned nothing (its initial plateau); so
every summary row carries the numbers of the best constant prediction fitted to the train
rows (SPEC 5, extension). Computed in float64 from the split as stored: labels are never
normalized (SPEC 3), so the baseline does not depend on the run's normalization.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from bnmodels import columns

if TYPE_CHECKING:
    from bnmodels.experiment.data import Split


REGRESSION_BASELINES = columns.REGRESSION_BASELINES
CLASSIFICATION_BASELINES = columns.CLASSIFICATION_BASELINES


def baselines(data: Split) -> dict[str, float]:
    """Regression: the MSE of predicting the train labels' mean, on train and test rows.
    Classification: predicting the train class frequencies, the test accuracy of the
    majority class (ties to the lowest index, as argmax) and the test cross-entropy
    (infinite if a test label's class never occurs in the train rows)."""
    if not data.num_class:
        y_train, y_test = data.y_train.double().numpy(), data.y_test.double().numpy()
        mean = y_train.mean()
        return {
            "baseline_train_mse": float(((y_train - mean) ** 2).mean()),
            "baseline_test_mse": float(((y_test - mean) ** 2).mean()),
        }
    labels = data.y_train.numpy()
    freq = np.bincount(labels, minlength=data.num_class) / len(labels)  # (num_class,)
    test = data.y_test.numpy()
    with np.errstate(divide="ignore"):
        log_freq = np.log(freq)
    return {
        "baseline_test_accuracy": float((test == freq.argmax()).mean()),
        "baseline_test_ce": float(-log_freq[test].mean()) if len(test) else math.nan,
    }
