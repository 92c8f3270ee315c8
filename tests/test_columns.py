"""One vocabulary of columns (bnmodels/columns.py): every history column an engine writes is
named there, and every one of them can be named by a claim."""

from __future__ import annotations

import pytest
from configs import quad2_spec, run_config
from test_classification import blobs

from bnmodels import columns
from bnmodels.experiment.data import generate
from bnmodels.study.metrics import column
from bnmodels.training.batched import train_runs
from bnmodels.training.reference import train_reference


@pytest.mark.parametrize("engine", ["reference", "batched"])
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_every_history_column_an_engine_writes_is_in_the_vocabulary(engine, task):
    data = generate(quad2_spec()) if task == "regression" else generate(blobs())
    cfg = run_config(depth=2, bn="pre", activation="relu", epochs=2)
    if engine == "reference":
        result = train_reference(cfg, data, probes=True)
    else:
        (result,) = train_runs([cfg], [data], probes=True)
    written = list(result.history)
    unnamed = [c for c in written if not columns.is_history_column(c)]
    assert not unnamed, f"add {unnamed} to bnmodels/columns.py"
    expected = columns.history_columns(cfg.depth, data.num_class, probes=True)
    assert written == expected


def test_every_history_column_can_be_named_by_a_claim():
    for name in columns.history_columns(depth=2, num_class=3, probes=True):
        if name != columns.STEP:
            assert column(name) is not None, f"study/metrics.py has no entry for {name}"


def test_the_vocabulary_refuses_what_it_does_not_name():
    assert not columns.is_history_column("grad_ratio_l0")
    assert not columns.is_history_column("train_loss")
    assert columns.is_history_column("grad_ratio_l12")
