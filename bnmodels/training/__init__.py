"""Training a plan's runs: the model (`model`), the reference engine (`reference`, one
`torch.nn` model a run) and the batched one (`batched`, `group`: many runs as one
computation; `shared_rows`: large data held once), the probes and precise BN, each run's
`result`, and a sweep's `tables`; a sweep (`sweep`) cut into shards trained in local
processes (`parallel`) or on a Ray cluster (`ray_cluster`). Imports `experiment` only."""
