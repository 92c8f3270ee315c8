"""The steps budget: exactly N SGD steps, in both engines, from params to runs.csv."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from configs import quad2_spec, run_config

from bnmodels.errors import ParamsError
from bnmodels.experiment.config import RunConfig
from bnmodels.experiment.data import generate
from bnmodels.experiment.params import validate
from bnmodels.training.batched import train_runs
from bnmodels.training.reference import train_reference
from bnmodels.training.tables import history_frame, runs_frame

torch.set_num_threads(1)
STEPS_PER_EPOCH = 14  # 141 train rows in batches of 10: 14 of 10, a last row skipped


@pytest.fixture(scope="module")
def split():
    spec = quad2_spec()
    s = generate(spec)
    assert s.x_train.shape[0] == 141
    return s


def steps_config(steps: int, **kw) -> RunConfig:
    """A steps-budget run on `split`; its epochs counted here, independently of params.py."""
    return run_config(
        **{
            "dataset": "d",
            "activation": "tanh",
            "bn": "pre",
            "depth": 2,
            "lr": 0.01,
            "epochs": math.ceil(steps / STEPS_PER_EPOCH),
            "steps": steps,
            **kw,
        }
    )


def counted_steps(cfg, split) -> int:
    """Optimizer steps of the reference engine, counted on torch's own SGD."""
    calls = []
    step = torch.optim.SGD.step

    def counting(self, *a, **kw):
        calls.append(1)
        return step(self, *a, **kw)

    torch.optim.SGD.step = counting
    try:
        train_reference(cfg, split)
    finally:
        torch.optim.SGD.step = step
    return len(calls)


@pytest.mark.parametrize("steps", [1, 14, 30, 42])
def test_a_steps_budget_makes_exactly_that_many_steps_like_a_plain_torch_loop(
    split, hand_train, steps
):
    cfg = steps_config(steps)
    result = train_reference(cfg, split)
    model, train_mse, test_mse, hand_steps = hand_train(cfg, split)
    assert hand_steps == steps == counted_steps(cfg, split)
    tracked = [v for k, v in result.state_dict.items() if k.endswith("num_batches_tracked")]
    assert [int(t) for t in tracked] == [steps] * cfg.depth
    # One history row per epoch, the last one possibly partial.
    full, part = divmod(steps, STEPS_PER_EPOCH)
    want = [STEPS_PER_EPOCH * (i + 1) for i in range(full)] + ([steps] if part else [])
    assert result.history["step"].tolist() == want
    np.testing.assert_allclose(result.history["train_mse"], train_mse, rtol=1e-6)
    np.testing.assert_allclose(result.history["test_mse"], test_mse, rtol=1e-6)


def test_an_epochs_budget_counts_its_steps_per_epoch(split):
    cfg = dataclasses.replace(steps_config(1), steps=None, epochs=3)
    assert train_reference(cfg, split).history["step"].tolist() == [14, 28, 42]


def test_the_batched_engine_follows_the_reference_under_a_steps_budget(split):
    """float64, where both engines agree to rounding; the step column exactly."""
    cfgs = [
        steps_config(30),
        steps_config(30, bn="none", activation="relu", seed=25),
        steps_config(30, batch_size=7, epochs=2),  # 20 steps per epoch (and a row skipped)
        steps_config(42, epochs=3),  # whole epochs: the same steps as epochs=3
        dataclasses.replace(steps_config(42), steps=None, epochs=3),
    ]
    split64 = split.to(dtype=torch.float64)
    batched = train_runs(cfgs, [split64] * len(cfgs), dtype=torch.float64)
    for cfg, b in zip(cfgs, batched, strict=True):
        ref = train_reference(cfg, split, dtype=torch.float64)
        assert b.history["step"].tolist() == ref.history["step"].tolist(), cfg.run_key
        for col in ("train_mse", "test_mse", "weight_norm_l1", "grad_ratio_l3"):
            np.testing.assert_allclose(b.history[col], ref.history[col], rtol=1e-9, err_msg=col)
        for k, v in ref.state_dict.items():
            torch.testing.assert_close(b.state_dict[k].to(v.dtype), v, rtol=1e-9, atol=1e-12)
    assert batched[2].history["step"].tolist() == [20, 30]
    # The same 42 steps as a steps budget or as 3 whole epochs: the same numbers.
    assert batched[3].history["test_mse"].tolist() == batched[4].history["test_mse"].tolist()


def test_runs_and_history_tables_show_the_budget_and_the_steps(split):
    cfgs = [steps_config(30), dataclasses.replace(steps_config(30), steps=None, epochs=2)]
    results = train_runs(cfgs, [split, split])
    runs = runs_frame(results)
    assert runs["steps"].tolist()[0] == 30 and runs["steps"].isna().tolist() == [False, True]
    assert runs["epochs"].tolist() == [3, 2]
    assert "-steps30-" in runs["run_key"][0] and "-e2-" in runs["run_key"][1]
    history = history_frame(results)
    assert history["step"].tolist() == [14, 28, 30, 14, 28]
    header, row = (line.split(",") for line in runs.to_csv(index=False).splitlines()[:2])
    assert row[header.index("steps")] == "30"


# -- params.yaml: one budget, a sweep's replacing the defaults' -----------------------


def test_a_sweep_giving_steps_trains_every_batch_size_for_the_same_steps(raw_params):
    # quad2 of the tiny params: 40 x 0.7 = 28 train rows
    raw_params["sweeps"] = {"batch": {"batch_size": [2, 10, 28], "steps": 30}}
    runs = validate(raw_params).sweeps["batch"].runs
    # 14, 2 (+ a last batch of 8) and 1 steps per epoch
    assert [(r.batch_size, r.steps, r.epochs) for r in runs] == [
        (2, 30, 3),
        (10, 30, 10),
        (28, 30, 30),
    ]
    assert all(RunConfig(**r.as_dict()) == r for r in runs)  # what a plan stores


def test_defaults_may_give_steps_and_a_sweep_epochs_instead(raw_params):
    del raw_params["defaults"]["epochs"]
    raw_params["defaults"]["steps"] = 5
    raw_params["sweeps"] = {"s": {"batch_size": 4}, "e": {"epochs": [1, 2]}}
    params = validate(raw_params)
    assert params.defaults.steps == 5 and params.defaults.epochs == 2  # 3 steps per epoch
    (run,) = params.sweeps["s"].runs
    assert (run.steps, run.epochs) == (5, 1)  # 7 steps per epoch at batch 4
    assert [(r.steps, r.epochs) for r in params.sweeps["e"].runs] == [(None, 1), (None, 2)]


def test_an_epochs_budget_plan_entry_is_unchanged(raw_params):
    run = validate(raw_params).sweeps["depth"].runs[0]
    assert "steps" not in run.as_dict() and "-e2-" in run.run_key


@pytest.mark.parametrize(
    ("where", "change", "expected"),
    [
        ("defaults", {"steps": 10}, "defaults: epochs and steps are both given"),
        ("defaults", {"epochs": None}, "defaults.epochs: missing epochs or steps"),
        ("sweep", {"epochs": 3, "steps": 10}, "sweeps.depth: epochs and steps are both given"),
        ("sweep", {"steps": 0}, "sweeps.depth.steps: 0 is not allowed; expected an integer >= 1"),
        ("sweep", {"steps": [5, 2.5]}, "sweeps.depth.steps[1]: 2.5 is not allowed"),
        ("defaults", {"steps": True, "epochs": None}, "defaults.steps: true is not allowed"),
    ],
)
def test_bad_budgets_are_reported_with_their_key_path(raw_params, where, change, expected):
    target = raw_params["defaults"] if where == "defaults" else raw_params["sweeps"]["depth"]
    for k, v in change.items():
        if v is None:
            del target[k]
        else:
            target[k] = v
    with pytest.raises(ParamsError) as exc:
        validate(raw_params)
    assert any(e.startswith(f"params.yaml: {expected}") for e in exc.value.errors), exc.value


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_steps_budget_on_cuda_with_graphs_matches_the_cpu_reference(split):
    """Full batches replay a CUDA graph; the partial last epoch stops the replays."""
    cfgs = [steps_config(30), steps_config(30, bn="post", activation="relu", seed=25)]
    batched = train_runs(cfgs, [split] * 2, device="cuda", dtype=torch.float64)
    for cfg, b in zip(cfgs, batched, strict=True):
        ref = train_reference(cfg, split, dtype=torch.float64)
        for col, values in ref.history.items():
            np.testing.assert_allclose(b.history[col], values, rtol=1e-8, atol=1e-12, err_msg=col)
