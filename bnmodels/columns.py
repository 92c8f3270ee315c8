"""The names of the columns a run produces, in one place (SPEC 4 and 5).

A leaf (no imports, no torch): the engines write these columns, the tables and the
tracker carry them, the claims, the report, the UI's view and DVC's plots read them. A
new column is added here once; tests/test_columns.py fails when an engine writes a
history column this module does not name.
"""

from __future__ import annotations

# Per-epoch metrics of a run, in eval mode over train and test rows, per task.
REGRESSION_METRICS = ("train_mse", "test_mse")
CLASSIFICATION_METRICS = ("train_ce", "test_ce", "train_accuracy", "test_accuracy")
METRICS = REGRESSION_METRICS + CLASSIFICATION_METRICS
# The loss a run's state is read from, per task (the test loss training is judged on).
TEST_LOSS = {"regression": "test_mse", "classification": "test_ce"}
LOSSES = ("train_mse", "test_mse", "train_ce", "test_ce")  # compared on a log scale
ACCURACIES = ("train_accuracy", "test_accuracy")  # fractions, higher is better

STEP = "step"  # SGD steps made by the end of the epoch
DEAD_FRACTION = "dead_fraction"  # hidden ReLU units never active on the train set
# Per Linear layer i (1 = first hidden, depth + 1 = output): `<prefix><i>`.
LAYER_PREFIXES = ("weight_std_l", "grad_std_l", "weight_norm_l", "grad_ratio_l")
GRAD_RATIO = "grad_ratio_l"  # ||grad W|| / ||W||: what the gradient claims compare
# Landscape probes (training/landscape.py), on sweeps with `probes: true`.
PROBES = ("probe_loss_range", "probe_grad_change", "probe_beta")

# runs.csv: the constant predictor's numbers (training/baseline.py) ...
REGRESSION_BASELINES = ("baseline_train_mse", "baseline_test_mse")
CLASSIFICATION_BASELINES = ("baseline_test_accuracy", "baseline_test_ce")
# ... and the summary columns (those of the other task are NaN for a run).
SUMMARY = (
    "final_train_mse",
    "final_test_mse",
    "best_test_mse",
    "final_train_ce",
    "final_test_ce",
    "final_test_accuracy",
    "best_test_accuracy",
    "final_test_mse_precise_bn",
    "final_test_ce_precise_bn",
    "final_test_accuracy_precise_bn",
    *REGRESSION_BASELINES,
    *CLASSIFICATION_BASELINES,
)


def metric_columns(num_class: int = 0) -> tuple[str, ...]:
    """The per-epoch metrics of a run: MSE for regression, cross-entropy and accuracy for
    a classification data set (num_class > 0)."""
    return CLASSIFICATION_METRICS if num_class else REGRESSION_METRICS


def history_columns(depth: int, num_class: int = 0, probes: bool = False) -> list[str]:
    """Per-epoch columns of a run's history, in order (SPEC 4)."""
    layers = range(1, depth + 2)
    return (
        list(metric_columns(num_class))
        + [STEP]
        + [f"{prefix}{i}" for prefix in LAYER_PREFIXES for i in layers]
        + [DEAD_FRACTION]
        + (list(PROBES) if probes else [])
    )


def is_history_column(name: str) -> bool:
    """Whether `name` is a column this module names (a per-layer one by its prefix)."""
    if name in (*METRICS, STEP, DEAD_FRACTION, *PROBES):
        return True
    return any(
        name.startswith(p) and name[len(p) :].isdigit() and name[len(p) :] != "0"
        for p in LAYER_PREFIXES
    )
