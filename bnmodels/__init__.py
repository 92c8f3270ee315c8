"""bnmodels: Batch Normalization experiments in small networks, a DVC pipeline tracked in MLflow.

Five parts, each a subpackage and each a set of DVC stages; a part imports only the parts
above it in this list (tests/test_layers.py keeps that true):

    experiment   params.yaml -> records; data sets; plans  (generate, normalize, read, plan)
        |
    training     a plan's runs -> results: model, engines, probes    (train)
        |
    tracking     results -> MLflow: parent and child runs, the UI view (train)
    study        runs/ tables -> claims judged with their statistics (plan validates, aggregate)
        |
    report       judged claims and tables -> reports/                (aggregate)

Beside them, leaves that any part may use: `errors` (expected failures), `atomic`
(all-or-nothing writes), `columns` (the tables' column names), `pools` (forked worker
processes that stop at once), `shutdown` (a stage's quick exit), and `cli` (the
`bnmodels` command, at the very top).

Data flows one way: data/raw (or a file under datasets/) -> data/processed -> data/plans
-> runs/<sweep> (+ MLflow) -> reports/. `study` reads what `training` wrote as tables,
never its code.
"""
