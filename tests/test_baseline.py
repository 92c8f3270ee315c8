"""The constant predictor's numbers in every summary row, against plain-Python arithmetic."""

import math
from collections import Counter

import pytest
import torch
from configs import run_config

from bnmodels.experiment.config import ClusterSpec, DatasetSpec, RunConfig
from bnmodels.experiment.data import generate, normalize
from bnmodels.training.batched import train_runs
from bnmodels.training.reference import train_reference
from bnmodels.training.tables import runs_frame

torch.set_num_threads(1)


def regression_spec() -> DatasetSpec:
    return DatasetSpec(
        name="q",
        num_examples=60,
        w=(2.0, -1.0),
        bias=True,  # an intercept: the labels' mean is far from 0
        delta=0.01,
        deg=2,
        seed=420,
        train_fraction=0.7,
        feature_scale=(3.0,),
        feature_shift=(1.0,),
    )


def cluster_spec() -> ClusterSpec:
    return ClusterSpec(
        name="c",
        num_class=3,
        num_examples=30,
        num_inputs=2,
        mean=1.0,
        std=2.0,
        seed=7,
        train_fraction=0.6,
        feature_scale=(1.0, 1.0),
        feature_shift=(0.0, 0.0),
    )


def config(dataset: str, **kw) -> RunConfig:
    return run_config(
        **{
            "dataset": dataset,
            "normalization": "zscore",
            "activation": "tanh",
            "bn": "pre",
            "width": 3,
            "batch_size": 8,
            "lr": 0.01,
            **kw,
        }
    )


def plain_regression(split):
    """float64 in plain Python: predict the mean of the train labels everywhere."""
    train = [float(v) for v in split.y_train.flatten().tolist()]
    test = [float(v) for v in split.y_test.flatten().tolist()]
    mean = math.fsum(train) / len(train)
    return {
        "baseline_train_mse": math.fsum((v - mean) ** 2 for v in train) / len(train),
        "baseline_test_mse": math.fsum((v - mean) ** 2 for v in test) / len(test),
    }


def plain_classification(split):
    """Predict the train class frequencies: accuracy of the most frequent class (lowest
    index among ties) and cross-entropy -log p(label) on the test rows."""
    counts = Counter(split.y_train.tolist())
    n = sum(counts.values())
    majority = min(counts, key=lambda c: (-counts[c], c))
    test = split.y_test.tolist()
    return {
        "baseline_test_accuracy": sum(y == majority for y in test) / len(test),
        "baseline_test_ce": -math.fsum(math.log(counts[y] / n) for y in test) / len(test),
    }


@pytest.mark.parametrize("engine", ["reference", "batched"])
def test_summary_rows_carry_the_constant_predictor_of_the_runs_own_data(engine):
    reg, cla = generate(regression_spec()), generate(cluster_spec())
    runs = [config("q"), config("q", normalization="none", bn="none"), config("c")]
    # Normalization moves features only: the baseline is that of the labels as stored.
    datas = [normalize(reg, "zscore"), reg, normalize(cla, "zscore")]
    if engine == "reference":
        results = [train_reference(r, d) for r, d in zip(runs, datas, strict=True)]
    else:
        results = train_runs(runs, datas)
    rows = runs_frame(results).set_index("run_key")
    expected = [plain_regression(reg), plain_regression(reg), plain_classification(cla)]
    for r, want in zip(runs, expected, strict=True):
        for column, value in want.items():
            assert rows.loc[r.run_key, column] == pytest.approx(value, rel=1e-12)
    # The columns of the other kind are empty, as for the other summary columns.
    assert math.isnan(rows.loc[runs[0].run_key, "baseline_test_accuracy"])
    assert math.isnan(rows.loc[runs[2].run_key, "baseline_test_mse"])


def test_a_test_class_absent_from_the_train_rows_has_an_infinite_baseline_ce():
    from bnmodels.experiment.data import Split
    from bnmodels.training.baseline import baselines

    x = torch.zeros(4, 1)
    split = Split(x, torch.tensor([0, 0, 1, 1]), x[:2], torch.tensor([2, 0]), num_class=3)
    b = baselines(split)
    assert b["baseline_test_accuracy"] == 0.5  # the tie 0/1 goes to class 0
    assert b["baseline_test_ce"] == math.inf
