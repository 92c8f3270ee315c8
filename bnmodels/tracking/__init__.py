"""Results into MLflow: the store (`store`), a sweep's parent run and its children
(`sweep_run`, `writers`, `workers`), model weights and the UI's landing view.
Imports `experiment` and `training`."""
