"""Several draws of a data set: draw d from seed + d, a run's draw seed mod draws."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch
from configs import quad2_spec
from test_stage_cli import invoke

from bnmodels.errors import ParamsError
from bnmodels.experiment.config import DatasetSpec, run_draw
from bnmodels.experiment.data import generate, load_draws, save_draws, save_split
from bnmodels.experiment.layout import data_file
from bnmodels.experiment.params import validate
from bnmodels.experiment.plan import load_plan_data, plan_runs
from bnmodels.training.baseline import baselines
from bnmodels.training.batched import train_runs
from bnmodels.training.sweep import train_sweep
from bnmodels.training.tables import runs_frame

torch.set_num_threads(1)


def spec(**kw) -> DatasetSpec:
    return quad2_spec(**{"num_examples": 40, **kw})


def same_split(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.tensors(), b.tensors(), strict=True))


def test_draw_d_is_the_data_set_generated_from_seed_plus_d():
    three = spec(draws=3)
    for d in range(3):
        assert same_split(generate(three, d), generate(spec(seed=420 + d)))
    assert not same_split(generate(three, 0), generate(three, 1))


def test_one_draw_is_stored_byte_for_byte_as_before(tmp_path):
    split = generate(spec())
    save_split(split, tmp_path / "old.pt")
    save_draws([split], tmp_path / "new.pt")
    assert (tmp_path / "old.pt").read_bytes() == (tmp_path / "new.pt").read_bytes()
    assert data_file(tmp_path, "d", "zscore", 0) == tmp_path / "d" / "zscore.pt"


def test_several_draws_round_trip_exactly(tmp_path):
    splits = [generate(spec(draws=2), d) for d in range(2)]
    save_draws(splits, tmp_path / "d.pt")
    back = load_draws(tmp_path / "d.pt")
    assert len(back) == 2 and all(map(same_split, splits, back))


def test_runs_of_one_seed_share_a_draw_and_consecutive_seeds_visit_every_draw(raw_params):
    raw_params["datasets"]["quad2"]["draws"] = 3
    raw_params["sweeps"]["depth"]["seed"] = [24, 25, 26, 27]
    params = validate(raw_params)
    depth = params.sweeps["depth"].runs
    assert [(r.seed, r.draw) for r in depth if r.depth == 1] == [(24, 0), (25, 1), (26, 2), (27, 0)]
    assert {r.draw for r in params.sweeps["placement"].runs} == {run_draw(24, 3)} == {0}
    assert depth[1].run_key.endswith("-s25-draw1")
    assert depth[1].as_dict()["draw"] == 1 and "draw" in depth[0].as_dict()  # draw 0 too
    assert params.datasets["quad2"].as_dict()["draws"] == 3


def test_a_single_draw_leaves_run_configurations_as_they_were(raw_params):
    run = validate(raw_params).sweeps["depth"].runs[0]
    assert run.draw is None and "draw" not in run.as_dict() and "draw" not in run.run_key


@pytest.mark.parametrize(
    ("draws", "seed", "expected"),
    [
        (0, 420, "datasets.quad2.draws: 0 is not allowed; expected an integer >= 1"),
        (1.5, 420, "datasets.quad2.draws: 1.5 is not allowed"),
        (3, 2**63 - 2, "datasets.quad2.draws: 3 draws need seeds up to seed + 2, beyond"),
    ],
)
def test_bad_draws_are_reported_with_their_key_path(raw_params, draws, seed, expected):
    raw_params["datasets"]["quad2"].update(draws=draws, seed=seed)
    with pytest.raises(ParamsError) as exc:
        validate(raw_params)
    assert any(e.startswith(f"params.yaml: {expected}") for e in exc.value.errors), exc.value


def test_the_stages_make_every_draw_and_each_run_trains_on_its_own(
    write_params, raw_params, tmp_path
):
    raw_params["datasets"]["quad2"]["draws"] = 2
    raw_params["sweeps"] = {"seeds": {"seed": [24, 25, 26], "normalization": "zscore"}}
    raw_params["claims"] = {}
    params_file = write_params(raw_params)
    raw, processed, plans = tmp_path / "raw.pt", tmp_path / "processed", tmp_path / "plans"
    invoke("generate", "quad2", "--params", str(params_file), "--out", str(raw))
    invoke("normalize", "quad2", "--raw", str(raw), "--processed", str(processed))
    assert sorted(p.name for p in (processed / "quad2").glob("*.pt")) == [
        "minmax.draw1.pt",
        "minmax.pt",
        "none.draw1.pt",
        "none.pt",
        "zscore.draw1.pt",
        "zscore.pt",
    ]
    invoke("plan", "--params", str(params_file), "--processed", str(processed), "--out", str(plans))
    plan = json.loads((plans / "seeds.json").read_text())
    assert [r["draw"] for r in plan["runs"]] == [0, 1, 0]
    md5 = hashlib.md5((processed / "quad2" / "zscore.draw1.pt").read_bytes()).hexdigest()
    assert plan["data_md5"]["quad2/zscore/draw1"] == md5 and "quad2/zscore" in plan["data_md5"]

    results = train_sweep(plan_runs(plan), load_plan_data(plan, processed))
    rows = runs_frame(results)
    assert rows["draw"].tolist() == [0, 1, 0]
    quad2 = validate(raw_params).datasets["quad2"]
    for r, row in zip(results, rows.itertuples(), strict=True):
        # the labels of the run's draw, regenerated here: their mean's MSE is its baseline
        assert (
            row.baseline_test_mse
            == baselines(generate(quad2, r.config.seed % 2))["baseline_test_mse"]
        )


def test_runs_on_different_draws_share_a_group_and_keep_their_bits(raw_params):
    """Draws have one shape, so the batched engine trains them as one group; each run's
    numbers are those it has when trained alone."""
    raw_params["datasets"]["quad2"]["draws"] = 4
    raw_params["sweeps"]["depth"]["seed"] = [24, 25, 26, 27]
    params = validate(raw_params)
    runs = params.sweeps["depth"].runs
    quad2 = params.datasets["quad2"]
    draws = [generate(quad2, d) for d in range(4)]
    datas = [draws[r.draw] for r in runs]
    together = train_runs(runs, datas)
    for r, d, t in zip(runs, datas, together, strict=True):
        (alone,) = train_runs([r], [d])
        for col, v in alone.history.items():
            assert t.history[col].tobytes() == v.tobytes(), (r.run_key, col)
    assert dataclasses.replace(runs[0], draw=None) != runs[0]  # the draw is configuration


def test_each_draw_is_its_own_mlflow_input_with_its_own_file():
    from bnmodels.tracking.writers import data_inputs

    got = data_inputs({"quad2/none": "a" * 32, "quad2/none/draw3": "b" * 32}, "proc")
    assert [i.name for i in got["quad2/none/draw3"]] == [
        "quad2/none/draw3/train",
        "quad2/none/draw3/test",
    ]
    assert {i.digest for i in got["quad2/none/draw3"]} == {"b" * 32}
    assert '"proc/quad2/none.draw3.pt"' in got["quad2/none/draw3"][0].source
    assert '"proc/quad2/none.pt"' in got["quad2/none"][0].source
