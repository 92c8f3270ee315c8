"""Rows held once (bnmodels/training/shared_rows.py): a group trained on SharedRows makes
the same steps, bit for bit, as one trained on per-run copies, and its evaluations
(chunked sums) agree with the full ones to float rounding."""

import numpy as np
import pytest
import torch
from configs import quad2_spec, run_config

from bnmodels.experiment.config import ClusterSpec
from bnmodels.experiment.data import generate, normalize
from bnmodels.training import batched, shared_rows
from bnmodels.training.batched import train_runs

torch.set_num_threads(1)


def cluster_spec():
    return ClusterSpec("c", 3, 60, 4, 3.0, 2.0, 420, 0.7, (1.0,) * 4, (0.0,) * 4, draws=2)


def runs_and_data(classification: bool):
    """Runs over two draws of one data set (two splits) with every BN position and
    activation, so that runs share a split and splits differ."""
    spec = cluster_spec() if classification else quad2_spec(draws=2)
    splits = [normalize(generate(spec, d), "zscore") for d in range(2)]
    cfgs, datas = [], []
    for bn in ("none", "pre", "post"):
        for act in ("relu", "tanh"):
            for seed in (1, 2, 3):
                cfgs.append(
                    run_config(
                        dataset="d",
                        bn=bn,
                        activation=act,
                        depth=2,
                        seed=seed,
                        batch_size=16,
                        epochs=3,
                        draw=seed % 2,
                    )
                )
                datas.append(splits[seed % 2])
    return cfgs, datas


@pytest.mark.parametrize("classification", [False, True])
def test_shared_rows_train_the_same_weights_and_agree_on_every_metric(monkeypatch, classification):
    cfgs, datas = runs_and_data(classification)
    copied = train_runs(cfgs, datas)
    monkeypatch.setattr(batched, "SHARED_ELEMENTS", 0)  # every group shares its rows
    monkeypatch.setattr(shared_rows, "CHUNK_ELEMENTS", 500)  # evaluations in many chunks
    shared = train_runs(cfgs, datas)
    for a, b in zip(copied, shared, strict=True):
        for k, t in a.state_dict.items():  # the steps: bit for bit
            assert torch.equal(t, b.state_dict[k]), k
        for col, v in a.history.items():
            np.testing.assert_allclose(b.history[col], v, rtol=2e-5, atol=1e-6, err_msg=col)
        assert a.precise_bn.keys() == b.precise_bn.keys()
        for k, v in a.precise_bn.items():
            assert b.precise_bn[k] == pytest.approx(v, rel=1e-4, abs=1e-6), k


def test_a_batch_is_each_runs_own_rows_of_its_own_split():
    x = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # two splits
    y = torch.arange(10).reshape(2, 5)
    rows = shared_rows.SharedRows(x, y, torch.tensor([1, 0, 1]))
    idx = torch.tensor([[4, 0], [1, 2], [3, 3]])
    xb, yb = rows.batch(idx)
    for r, (d, i) in enumerate(zip([1, 0, 1], idx.tolist(), strict=True)):
        assert torch.equal(xb[r], x[d, i]) and torch.equal(yb[r], y[d, i])
