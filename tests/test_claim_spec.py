"""The claims section of params.yaml: every mistake reported with its key path, all at
once, by the same validation that gates training; a claims-only edit changes no plan."""

from __future__ import annotations

import pytest

from bnmodels.errors import ParamsError
from bnmodels.experiment.layout import data_file
from bnmodels.experiment.plan import make_plans, plan_text
from bnmodels.study.claim import INTERACTION, OPTIMUM, PAIR, TREND
from bnmodels.study.load import validate_study

GOOD = {
    "bn_helps": {
        "says": "BN helps",
        "sweep": "depth_bn",
        "compare": {"bn": "pre"},
        "against": {"bn": "none"},
        "where": {"depth": [1, 2]},
        "metric": "final_test_mse",
        "expect": "lower",
    },
    "deeper": {
        "kind": "trend",
        "says": "more with depth",
        "sweep": "depth_bn",
        "compare": {"bn": "pre"},
        "against": {"bn": "none"},
        "along": "depth",
        "metric": "last3_test_mse",
        "expect": "lower",
    },
    "tanh_more": {
        "kind": "interaction",
        "says": "tanh more",
        "sweep": "placement",
        "compare": {"bn": "pre"},
        "against": {"bn": "none"},
        "group": {"activation": "tanh"},
        "than": {"activation": "sigmoid"},
        "metric": "epochs_to_train_mse",
        "threshold": {"start_fraction": 0.5},
        "expect": "lower",
    },
    "u_shape": {
        "kind": "optimum",
        "says": "U",
        "sweep": "lrs",
        "along": "lr",
        "metric": "best_test_mse",
        "expect": "minimum",
    },
    "same": {
        "says": "placement",
        "sweep": "placement",
        "compare": {"bn": "post"},
        "against": {"bn": "pre"},
        "metric": "final_dead_fraction",
        "expect": "same",
        "margin": 0.25,
    },
}


@pytest.fixture
def params(raw_params):
    raw_params["sweeps"]["depth_bn"] = {"bn": ["none", "pre"], "depth": [1, 2, 3]}
    raw_params["sweeps"]["lrs"] = {"lr": [0.01, 0.1, 1.0]}
    raw_params["claims"] = {k: dict(v) for k, v in GOOD.items()}
    return raw_params


def errors_of(raw) -> list[str]:
    with pytest.raises(ParamsError) as exc:
        validate_study(raw)
    return exc.value.errors


def test_the_example_claims_are_valid_and_typed(params):
    claims = validate_study(params).claims
    assert [c.kind for c in claims.values()] == [PAIR, TREND, INTERACTION, OPTIMUM, PAIR]
    c = claims["bn_helps"]
    assert c.compare == (("bn", ("pre",)),) and c.where == (("depth", (1, 2)),)
    assert c.metric.scale == "log" and claims["same"].metric.scale == "linear"
    assert claims["tanh_more"].threshold.start_fraction == 0.5
    with pytest.raises(AttributeError):
        c.expect = "higher"  # frozen


@pytest.mark.parametrize(
    ("claim", "edit", "message"),
    [
        (
            "bn_helps",
            {"compre": {"bn": "pre"}},
            "params.yaml: claims.bn_helps.compre: unknown key; expected one of kind, says,",
        ),
        (
            "bn_helps",
            {"sweep": "dpth"},
            "params.yaml: claims.bn_helps.sweep: 'dpth' is not allowed; expected a sweep defined "
            "under sweeps: depth, depth_bn, lrs, placement",
        ),
        (
            "bn_helps",
            {"where": {"depth": [1, 7]}},
            "params.yaml: claims.bn_helps.where.depth[1]: 7 is not allowed; expected one of 1, 2, 3 "
            "(the values of sweep depth_bn)",
        ),
        (
            "bn_helps",
            {"compare": {"bn": "post"}},
            "params.yaml: claims.bn_helps.compare.bn: 'post' is not allowed; expected one of none, "
            "pre (the values of sweep depth_bn)",
        ),
        (
            "bn_helps",
            {"where": {"colour": "red"}},
            "params.yaml: claims.bn_helps.where.colour: unknown key; expected one of dataset,",
        ),
        (
            "bn_helps",
            {"metric": "final_test_mae"},
            "params.yaml: claims.bn_helps.metric: 'final_test_mae' is not allowed; expected "
            "final_<column>, last<k>_<column>, best_<column>, mean_<column>, epochs_to_<column>, "
            "grad_spread, grad_tilt or precise_bn_gap",
        ),
        (
            "bn_helps",
            {"where": {"bn": "none"}},
            "params.yaml: claims.bn_helps.compare: selects no runs: it shares no value with `where`",
        ),
        (
            "bn_helps",
            {"compare": {"bn": ["none", "pre"]}},
            "params.yaml: claims.bn_helps.against: selects runs that compare also selects; "
            "expected arms that differ in a key with no shared value",
        ),
        (
            "bn_helps",
            {"against": {"depth": 1}},
            "params.yaml: claims.bn_helps.against: sets depth but compare sets bn; expected the "
            "same keys",
        ),
        (
            "bn_helps",
            {"expect": "smaller"},
            "params.yaml: claims.bn_helps.expect: 'smaller' is not allowed; expected one of lower, "
            "higher, same",
        ),
        (
            "bn_helps",
            {"expect": "same"},
            "params.yaml: claims.bn_helps.margin: missing key (expect: same needs an equivalence "
            "margin)",
        ),
        (
            "same",
            {"margin": -1},
            "params.yaml: claims.same.margin: -1 is not allowed; expected a finite number > 0",
        ),
        (
            "bn_helps",
            {"margin": 0.2},
            "params.yaml: claims.bn_helps.margin: unused: only expect: same takes a margin",
        ),
        (
            "bn_helps",
            {"kind": "tren"},
            "params.yaml: claims.bn_helps.kind: 'tren' is not allowed; expected one of pair, trend, "
            "interaction, optimum",
        ),
        (
            "deeper",
            {"along": "bn"},
            "params.yaml: claims.deeper.along: 'bn' is not allowed; expected an axis of at least 2 "
            "numbers of this sweep: depth",
        ),
        (
            "u_shape",
            {"expect": "lower"},
            "params.yaml: claims.u_shape.expect: 'lower' is not allowed; expected one of minimum, "
            "maximum",
        ),
        (
            "tanh_more",
            {"threshold": None},
            "params.yaml: claims.tanh_more.threshold: missing key (epochs_to_<column> needs a "
            "threshold)",
        ),
        (
            "tanh_more",
            {"than": {"activation": "tanh"}},
            "params.yaml: claims.tanh_more.than: selects runs that group also selects",
        ),
        (
            "tanh_more",
            {"group": {"bn": "pre"}, "than": {"bn": "none"}},
            "params.yaml: claims.tanh_more.group: sets bn, which the arms set",
        ),
        ("bn_helps", {"says": None}, "params.yaml: claims.bn_helps.says: missing key"),
        (
            "bn_helps",
            {"compare": {"width": 4}, "against": {"width": "best"}},
            "params.yaml: claims.bn_helps.against.width: 'best' is not allowed; expected a value "
            "of sweep depth_bn (width is not an axis of it)",
        ),
    ],
)
def test_each_mistake_is_reported_with_its_key_path(params, claim, edit, message):
    for k, v in edit.items():
        if v is None:
            params["claims"][claim].pop(k, None)
        else:
            params["claims"][claim][k] = v
    errors = errors_of(params)
    assert any(e.startswith(message) for e in errors), errors


def test_every_problem_is_reported_at_once(params):
    params["claims"]["bn_helps"]["metric"] = "nope"
    params["claims"]["deeper"]["sweep"] = "missing"
    params["claims"]["7up"] = "not a mapping"
    params["defaults"]["bn"] = "prre"  # a problem outside the claims, in the same list
    errors = errors_of(params)
    for path in ("claims.bn_helps.metric", "claims.deeper.sweep", "claims.7up", "defaults.bn"):
        assert any(f": {path}: " in e for e in errors), (path, errors)


def test_claims_of_an_invalid_sweep_are_not_reported_twice(params):
    params["sweeps"]["depth_bn"]["bn"] = ["none", "prre"]
    errors = errors_of(params)
    assert not any("claims.bn_helps" in e for e in errors), errors


def test_a_claims_only_edit_changes_no_plan(params, tmp_path):
    # The plan stage validates the claims, but a sweep's plan (what its train stage
    # depends on) holds only its runs and data: editing claims retrains nothing.
    processed = tmp_path / "processed"
    for ds, norm in {("quad2", "none")}:
        data_file(processed, ds, norm).parent.mkdir(parents=True, exist_ok=True)
        data_file(processed, ds, norm).write_bytes(b"data")
    before = make_plans(validate_study(params).params, processed)
    params["claims"]["bn_helps"]["expect"] = "higher"
    params["claims"]["new"] = dict(GOOD["u_shape"])
    del params["claims"]["same"]
    after = make_plans(validate_study(params).params, processed)
    assert {k: plan_text(p) for k, p in before.items()} == {
        k: plan_text(p) for k, p in after.items()
    }


def test_a_study_without_a_claims_section_is_stopped_before_training(raw_params):
    # DVC reads `claims` for the aggregate stage only after every sweep trained: the plan
    # stage's validation says so first.
    raw_params.pop("claims", None)
    assert any(
        e == "params.yaml: claims: missing section (write `claims: {}` for a study without claims)"
        for e in errors_of(raw_params)
    )
    raw_params["claims"] = {}
    assert validate_study(raw_params).claims == {}
