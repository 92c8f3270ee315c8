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

import os as _os
import sys as _sys


def _one_blas_thread() -> None:
    """numpy's OpenBLAS at one thread, unless the user set OPENBLAS_NUM_THREADS.

    By default OpenBLAS starts a busy-waiting thread per core at its first matrix product,
    and the stages fork workers onto every core (training, the calibration, the figures):
    the two fought over the cores. The calibrate stage took 32.5 s with them, 12.2 s
    without, on 2 cores; the matrices here are small and gain nothing from threads, and
    every number is the same (the committed reports byte-identical). The variable works
    only before numpy is imported; where numpy already is (a stage that imports pandas
    first), threadpoolctl sets the loaded library instead.
    """
    if _os.environ.setdefault("OPENBLAS_NUM_THREADS", "1") != "1":
        return
    if "numpy" in _sys.modules:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="blas")


_one_blas_thread()
