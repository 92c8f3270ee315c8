"""Results into MLflow: the store (`store`), a sweep's parent run and its children
(`sweep_run`, `writers`, `workers`), model weights and the UI's landing view, and
`train_and_log`, the one path from a sweep's runs to runs/ and MLflow (the train stage's).
Imports `experiment` and `training`."""
