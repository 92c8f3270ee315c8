"""What the tests build runs and data sets from: the course's defaults, in one place."""

from __future__ import annotations

from bnmodels.experiment.config import DatasetSpec, RunConfig

RUN_DEFAULTS = {  # a run's configuration keys (SPEC 1), as params.yaml's defaults
    "dataset": "quad2",
    "normalization": "none",
    "activation": "sigmoid",
    "bn": "none",
    "depth": 1,
    "width": 4,
    "init": "default",
    "momentum": 0.1,
    "batch_size": 10,
    "lr": 0.03,
    "epochs": 2,
    "seed": 24,
}


def quad2_spec(**changes) -> DatasetSpec:
    """The course's quad2 data set (y = 2 x1^2 - x2^2 + noise), with `changes`."""
    base = {
        "name": "d",
        "num_examples": 202,
        "w": (2.0, -1.0),
        "bias": False,
        "delta": 0.01,
        "deg": 2,
        "seed": 420,
        "train_fraction": 0.7,
        "feature_scale": (1.0, 1.0),
        "feature_shift": (0.0, 0.0),
    }
    return DatasetSpec(**{**base, **changes})


def run_config(**changes) -> RunConfig:
    """A run of the defaults, with `changes`."""
    return RunConfig(**{**RUN_DEFAULTS, **changes})
