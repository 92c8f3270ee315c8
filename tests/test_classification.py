"""Classification (SPEC 2b, 4, 5): the course helpers' `cla=True` path, in both engines.

Checked against SPEC 2b's pseudo-code and against a cross-entropy training loop written
here in plain torch.nn, in float64 where the engines must agree to 1e-8.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from configs import run_config
from torch import nn

from bnmodels.errors import ParamsError
from bnmodels.experiment.config import ClusterSpec, DatasetSpec, RunConfig
from bnmodels.experiment.data import Split, generate, load_split, normalize, save_split
from bnmodels.experiment.params import validate
from bnmodels.training.batched import train_group, train_runs
from bnmodels.training.model import build_model
from bnmodels.training.reference import train_reference
from bnmodels.training.tables import history_frame, runs_frame

BLOBS = {
    "num_class": 3,
    "num_examples": 60,
    "num_inputs": 2,
    "mean": 2,
    "std": 1.5,
    "seed": 420,
    "train_fraction": 0.7,
}


def blobs(**kw) -> ClusterSpec:
    d = {**BLOBS, **kw}
    nf = d["num_inputs"]
    return ClusterSpec(name="b", feature_scale=(1.0,) * nf, feature_shift=(0.0,) * nf, **d)


def config(**kw) -> RunConfig:
    return run_config(**{"dataset": "b", "depth": 2, "lr": 0.01, "epochs": 10, **kw})


@pytest.fixture(scope="module")
def split() -> Split:
    return generate(blobs())


def spec_2b(d: dict):
    """SPEC 2b line by line, from the raw params entry."""
    g = torch.Generator().manual_seed(d["seed"])
    k = d["mean"] * (d["num_class"] - 1) / 2
    xs, ys = [], []
    for i in range(d["num_class"]):
        size = (d["num_examples"], d["num_inputs"])
        xs.append(torch.normal(i * d["mean"] - k, d["std"], size=size, generator=g))
        ys.append(torch.full((d["num_examples"],), i, dtype=torch.int64))
    x, y = torch.cat(xs), torch.cat(ys)
    x = x * torch.tensor(d.get("feature_scale", 1.0)) + torch.tensor(d.get("feature_shift", 0.0))
    perm = torch.randperm(d["num_class"] * d["num_examples"], generator=g)
    n_train = int(d["num_class"] * d["num_examples"] * d["train_fraction"])
    return x[perm[:n_train]], y[perm[:n_train]], x[perm[n_train:]], y[perm[n_train:]]


@pytest.mark.parametrize(
    "overrides",
    [{}, {"num_class": 2, "num_inputs": 5}, {"feature_scale": [10, 0.1], "feature_shift": 3}],
)
def test_generation_follows_spec_2b_exactly_and_round_trips(raw_params, tmp_path, overrides):
    raw_params["datasets"]["b"] = {**BLOBS, **overrides}
    spec = validate(raw_params).datasets["b"]
    got = generate(spec)
    want = spec_2b({**BLOBS, **overrides})
    for a, b in zip(got.tensors(), want, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert got.num_class == spec.num_class and got.y_train.dtype == torch.int64
    save_split(got, tmp_path / "b.pt")
    back = load_split(tmp_path / "b.pt")
    assert back.num_class == got.num_class
    assert all(torch.equal(a, b) for a, b in zip(back.tensors(), got.tensors(), strict=True))


def test_normalization_leaves_labels_and_classes_untouched(split):
    z = normalize(split, "zscore")
    assert torch.equal(z.y_train, split.y_train) and z.num_class == 3
    torch.testing.assert_close(z.x_train.mean(0), torch.zeros(2), atol=1e-6, rtol=0)
    assert z.to(torch.float64).y_test.dtype == torch.int64


BAD = {  # overrides of a valid entry, and the message each must give
    "num_class 1": ({"num_class": 1}, "num_class: 1 is not allowed; expected an integer >= 2"),
    "std 0": ({"std": 0}, "std: 0 is not allowed; expected a finite number > 0"),
    "negative mean": ({"mean": -1}, "mean: -1 is not allowed; expected a finite number >= 0"),
    "regression key": ({"w": [1, 2]}, "w: unknown key; expected one of num_class"),
    "too few rows": (
        {"num_examples": 1, "num_class": 2},
        ": num_class 2 x num_examples 1 x train_fraction 0.7 leaves 1 train and 1 test rows",
    ),
    "scale length": (
        {"feature_scale": [1, 2, 3]},
        "feature_scale: [1, 2, 3] is not allowed; expected a finite number or a list of 2",
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_classification_fields_are_reported_with_their_key_path(raw_params, case):
    overrides, message = BAD[case]
    raw_params["datasets"]["b"] = {**BLOBS, **overrides}
    with pytest.raises(ParamsError) as exc:
        validate(raw_params)
    assert any(
        f"params.yaml: datasets.b{message}" in e or f"datasets.b.{message}" in e
        for e in exc.value.errors
    ), exc.value.errors


def test_a_missing_classification_field_is_named(raw_params):
    raw_params["datasets"]["b"] = {k: v for k, v in BLOBS.items() if k != "std"}
    with pytest.raises(ParamsError, match=r"datasets\.b\.std: missing key"):
        validate(raw_params)


def hand_train_ce(cfg: RunConfig, split: Split, reference_mlp):
    """SPEC 4's loop with cross-entropy, in plain torch.nn and float64."""
    xtr, ytr, xte, yte = split.x_train.double(), split.y_train, split.x_test.double(), split.y_test
    shape = (cfg.depth, cfg.width, cfg.activation, cfg.bn, cfg.momentum, cfg.init, cfg.seed)
    model = reference_mlp(xtr.shape[1], *shape, outputs=split.num_class).double()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    gs = torch.Generator().manual_seed(cfg.seed)
    n = xtr.shape[0]
    hist = {c: [] for c in ("train_ce", "test_ce", "train_accuracy", "test_accuracy")}
    for _ in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gs)
        for start in range(0, n, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            if len(idx) == 1:
                continue
            opt.zero_grad()
            nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            for part, x, y in (("train", xtr, ytr), ("test", xte, yte)):
                logits = model(x)
                hist[f"{part}_ce"].append(nn.functional.cross_entropy(logits, y).item())
                hist[f"{part}_accuracy"].append((logits.argmax(1) == y).double().mean().item())
    return model, hist


CASES = [
    config(activation=a, bn=b, depth=1 + n % 2)
    for n, (a, b) in enumerate(
        itertools.product(["sigmoid", "relu", "tanh"], ["none", "pre", "post"])
    )
]


@pytest.mark.parametrize("cfg", CASES, ids=lambda c: f"{c.activation}-{c.bn}-d{c.depth}")
def test_both_engines_follow_a_plain_cross_entropy_loop_in_float64(split, reference_mlp, cfg):
    _, want = hand_train_ce(cfg, split, reference_mlp)
    ref = train_reference(cfg, split, dtype=torch.float64)
    batched = train_runs([cfg], [split], dtype=torch.float64)[0]
    assert set(want) <= set(ref.history) and not ref.diverged
    for col, values in want.items():
        np.testing.assert_allclose(ref.history[col], values, rtol=1e-8, atol=1e-12, err_msg=col)
        np.testing.assert_allclose(batched.history[col], values, rtol=1e-8, atol=1e-12, err_msg=col)
    assert "train_mse" not in ref.history and "train_mse" not in batched.history


def test_the_logged_weights_give_back_the_final_test_accuracy(split):
    cfg = config(bn="pre", activation="relu", epochs=5, lr=0.1)
    for result in (train_reference(cfg, split), train_runs([cfg], [split])[0]):
        model = build_model(cfg, 2, num_class=3)
        model.load_state_dict(result.state_dict)
        with torch.no_grad():
            accuracy = (model.eval()(split.x_test).argmax(1) == split.y_test).double().mean()
        assert accuracy.item() == result.final_test_accuracy
        assert result.best_test_accuracy == np.nanmax(result.history["test_accuracy"])


def test_mixed_regression_and_classification_runs_are_bit_independent_of_company(split):
    reg_spec = DatasetSpec("q", 100, (2.0, -1.0), False, 0.01, 2, 420, 0.7, (1.0,) * 2, (0.0,) * 2)
    reg = generate(reg_spec)
    runs = [
        config(dataset=ds, activation=a, bn=b, seed=s, epochs=4)
        for ds, a, b, s in itertools.product(
            ["b", "q"], ["relu", "tanh"], ["none", "pre", "post"], [1, 2]
        )
    ]
    datas = [split if r.dataset == "b" else reg for r in runs]
    together = train_runs(runs, datas)
    for i in (0, 5, 13, 22):
        alone = train_group([runs[i]], [datas[i]])[0]
        for col, values in alone.history.items():
            np.testing.assert_array_equal(values, together[i].history[col], err_msg=col)
        for k, t in alone.state_dict.items():
            assert torch.equal(t, together[i].state_dict[k]), k
    # runs.csv and history.csv hold both kinds, each run's other-kind columns empty
    table = runs_frame(together)
    assert {"final_test_mse", "final_test_accuracy", "best_test_accuracy"} <= set(table)
    cla = table["dataset"] == "b"
    assert table.loc[cla, "final_test_mse"].isna().all()
    assert table.loc[~cla, "final_test_accuracy"].isna().all()
    assert table.loc[cla, "final_test_accuracy"].between(0, 1).all()
    hist = history_frame(together)
    assert {"train_mse", "test_ce", "test_accuracy"} <= set(hist)


def test_regression_only_sweeps_keep_their_columns(split):
    reg = generate(DatasetSpec("q", 60, (1.0,), False, 0.0, 1, 1, 0.7, (1.0,), (0.0,)))
    result = train_runs([config(dataset="q", epochs=2)], [reg])
    assert "final_test_accuracy" not in runs_frame(result)
    assert "test_ce" not in history_frame(result)
    assert math.isnan(result[0].final_test_accuracy)
