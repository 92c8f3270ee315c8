"""Results into MLflow: the store (`store`), a sweep's parent run and its children
(`sweep_run`, `writers`, `workers`), model weights and the UI's landing view, and
`train_and_log`, the one path from a sweep's runs to runs/ and MLflow (the train stage's).
Imports `experiment` and `training`."""

__all__ = ["load_run_model"]


def __getattr__(name: str):
    """`bnmodels.tracking.load_run_model`, the public path of `sweep_run.load_run_model`,
    imported on first use (the package's modules stay cheap to import one by one)."""
    if name == "load_run_model":
        from bnmodels.tracking.sweep_run import load_run_model

        return load_run_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
