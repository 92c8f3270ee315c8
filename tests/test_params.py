"""params.yaml: complete validation with readable messages, and expansion into runs (SPEC 1, 6)."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bnmodels.errors import ParamsError
from bnmodels.experiment.config import CONFIG_KEYS, RunConfig
from bnmodels.experiment.params import load_params, validate

REPO = Path(__file__).resolve().parents[1]
PARAMS_NAME = "tiny-params.yaml"  # not the default name, so messages must name the real file


def problems(write_params, raw) -> tuple[Path, list[str]]:
    """Write `raw`, load it, and return (path, every error message); it must fail."""
    path = write_params(raw, name=PARAMS_NAME)
    with pytest.raises(ParamsError) as exc:
        load_params(path)
    errors = exc.value.errors
    assert errors, "ParamsError without messages"
    for e in errors:  # the exception's text lists every message too
        assert e in str(exc.value)
    return path, errors


def mentions_path(message: str, key_path: str) -> bool:
    """`key_path` appears as a whole key path (not as the prefix of a longer one)."""
    return re.search(rf"(?<![\w.\[]){re.escape(key_path)}(?![\w.\[])", message) is not None


def assert_reported(path, errors, key_path, value=None, allowed=()):
    """One message names the file, the key path, the bad value and what is allowed."""
    hits = [e for e in errors if mentions_path(e, key_path)]
    assert hits, f"no message names {key_path!r}: {errors}"
    msg = hits[0]
    assert path.name in msg, msg
    if value is not None:
        assert value.lower() in msg.lower(), f"{value!r} not in {msg!r}"
    for word in allowed:
        assert word in msg, f"{word!r} not in {msg!r}"


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def mutate(raw):
        d = raw
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return mutate


def _merge(*keys_and_mapping):
    *keys, mapping = keys_and_mapping

    def mutate(raw):
        d = raw
        for k in keys:
            d = d[k]
        d.update(mapping)

    return mutate


def _delete(*keys):
    def mutate(raw):
        d = raw
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]

    return mutate


# (mutation of the tiny params, key path, shown bad value, words of what is allowed)
SINGLE_PROBLEMS = {
    "unknown top-level key": (
        _set("extras", 1),
        "extras",
        "extras",
        ["datasets", "defaults", "sweeps"],
    ),
    "unknown key in defaults": (_set("defaults", "lrate", 0.1), "defaults.lrate", "lrate", ["lr"]),
    "unknown key in a sweep": (
        _set("sweeps", "depth", "detph", [1, 2]),
        "sweeps.depth.detph",
        "detph",
        ["depth"],
    ),
    "unknown key in a data set": (
        _set("datasets", "quad2", "noise", 0.1),
        "datasets.quad2.noise",
        "noise",
        ["delta"],
    ),
    "misspelled value in an axis": (
        _set("sweeps", "placement", "bn", ["none", "prre", "post"]),
        "sweeps.placement.bn[1]",
        "prre",
        ["none", "pre", "post"],
    ),
    "misspelled activation": (
        _set("defaults", "activation", "sigmod"),
        "defaults.activation",
        "sigmod",
        ["sigmoid", "relu", "tanh"],
    ),
    "misspelled normalization": (
        _set("defaults", "normalization", "z-score"),
        "defaults.normalization",
        "z-score",
        ["none", "zscore", "minmax"],
    ),
    "misspelled init": (
        _set("sweeps", "depth", "init", "he"),
        "sweeps.depth.init",
        "he",
        ["default", "xavier", "kaiming"],
    ),
    "depth as a word": (_set("defaults", "depth", "two"), "defaults.depth", "two", ["integer"]),
    "bias as a quoted word": (
        _set("datasets", "quad2", "bias", "yes"),
        "datasets.quad2.bias",
        "yes",
        ["true", "false"],
    ),
    "lr as a boolean": (_set("defaults", "lr", True), "defaults.lr", "true", ["number"]),
    "lr as a word": (_set("defaults", "lr", "fast"), "defaults.lr", "fast", ["number"]),
    "empty axis": (_set("sweeps", "depth", "seed", []), "sweeps.depth.seed", "[]", []),
    "lr zero": (_set("defaults", "lr", 0), "defaults.lr", "0", ["> 0"]),
    "lr negative in an axis": (
        _set("sweeps", "depth", "lr", [0.1, -0.1]),
        "sweeps.depth.lr[1]",
        "-0.1",
        ["> 0"],
    ),
    "momentum zero": (_set("defaults", "momentum", 0), "defaults.momentum", "0", ["(0, 1]"]),
    "momentum above one": (
        _set("sweeps", "placement", "momentum", 1.5),
        "sweeps.placement.momentum",
        "1.5",
        ["(0, 1]"],
    ),
    "depth zero in an axis": (
        _set("sweeps", "depth", "depth", [0, 2]),
        "sweeps.depth.depth[0]",
        "0",
        ["1"],
    ),
    "width zero": (_set("defaults", "width", 0), "defaults.width", "0", ["1"]),
    "width fractional": (_set("defaults", "width", 2.5), "defaults.width", "2.5", ["integer"]),
    "epochs zero": (_set("defaults", "epochs", 0), "defaults.epochs", "0", ["1"]),
    "batch size one": (_set("defaults", "batch_size", 1), "defaults.batch_size", "1", ["2"]),
    "batch size larger than the train set": (  # 40 examples x 0.7 = 28 train rows
        _set("sweeps", "depth", "batch_size", [10, 29]),
        "sweeps.depth.batch_size",
        "29",
        ["28"],
    ),
    "sweep names a missing data set": (
        _set("sweeps", "depth", "dataset", "quad3"),
        "sweeps.depth.dataset",
        "quad3",
        ["quad2"],
    ),
    "axis names a missing data set": (
        _set("sweeps", "depth", "dataset", ["quad2", "quad3"]),
        "sweeps.depth.dataset[1]",
        "quad3",
        ["quad2"],
    ),
    "defaults name a missing data set": (
        _set("defaults", "dataset", "quad3"),
        "defaults.dataset",
        "quad3",
        ["quad2"],
    ),
    "repeated value in an axis": (
        _set("sweeps", "depth", "seed", [24, 25, 24]),
        "sweeps.depth.seed[2]",
        "24",
        [],
    ),
    "repeated number written as int and float": (
        _set("sweeps", "depth", "lr", [1, 0.5, 1.0]),
        "sweeps.depth.lr[2]",
        "1",
        [],
    ),
    "sweep larger than max_runs": (  # placement has 2 x 3 = 6 runs, depth 4
        _set("execution", {"max_runs": 5}),
        "sweeps.placement",
        "6",
        ["max_runs"],
    ),
    "bad execution engine": (
        _set("execution", {"engine": "fast"}),
        "execution.engine",
        "fast",
        ["batched", "reference"],
    ),
    "bad execution device": (
        _set("execution", {"device": "tpu"}),
        "execution.device",
        "tpu",
        ["cpu", "cuda"],
    ),
    "bad execution threads": (_set("execution", {"threads": 0}), "execution.threads", "0", ["1"]),
    "bad execution dtype": (
        _set("execution", {"dtype": "float16"}),
        "execution.dtype",
        "float16",
        ["float32"],
    ),
    "bad execution max_runs": (
        _set("execution", {"max_runs": 0}),
        "execution.max_runs",
        "0",
        ["1"],
    ),
    "unknown execution key": (
        _set("execution", {"procs": 4}),
        "execution.procs",
        "procs",
        ["threads", "workers", "cluster"],
    ),
    "bad execution workers": (
        _set("execution", {"workers": 0}),
        "execution.workers",
        "0",
        ["auto", "1"],
    ),
    "bad execution cluster": (
        _set("execution", {"cluster": "spark"}),
        "execution.cluster",
        "spark",
        ["local", "ray"],
    ),
    "w too short with bias": (
        _merge("datasets", "quad2", {"w": [2], "bias": True}),
        "datasets.quad2.w",
        "[2]",
        ["bias"],
    ),
    "w empty": (_set("datasets", "quad2", "w", []), "datasets.quad2.w", "[]", []),
    "train_fraction of one": (
        _set("datasets", "quad2", "train_fraction", 1.0),
        "datasets.quad2.train_fraction",
        "1.0",
        ["(0, 1)"],
    ),
    "negative delta": (
        _set("datasets", "quad2", "delta", -0.5),
        "datasets.quad2.delta",
        "-0.5",
        [">= 0"],
    ),
    "deg zero": (_set("datasets", "quad2", "deg", 0), "datasets.quad2.deg", "0", ["1"]),
    "feature_scale of the wrong length": (
        _set("datasets", "quad2", "feature_scale", [1, 2, 3]),
        "datasets.quad2.feature_scale",
        "[1, 2, 3]",
        ["2"],
    ),
    "negative seed": (_set("defaults", "seed", -1), "defaults.seed", "-1", ["integer"]),
    "float seed in an axis": (
        _set("sweeps", "depth", "seed", [24, 25.5]),
        "sweeps.depth.seed[1]",
        "25.5",
        ["integer"],
    ),
    "missing defaults key": (_delete("defaults", "seed"), "defaults.seed", None, []),
    "missing data set key": (_delete("datasets", "quad2", "deg"), "datasets.quad2.deg", None, []),
    "missing section": (_delete("sweeps"), "sweeps", None, []),
    "sweep that is not a mapping": (_set("sweeps", "depth", [1, 2]), "sweeps.depth", "[1, 2]", []),
}


@pytest.mark.parametrize(
    ("mutate", "key_path", "value", "allowed"),
    SINGLE_PROBLEMS.values(),
    ids=SINGLE_PROBLEMS.keys(),
)
def test_each_bad_input_gives_one_message_naming_file_key_path_value_and_allowed(
    write_params, raw_params, mutate, key_path, value, allowed
):
    mutate(raw_params)
    path, errors = problems(write_params, raw_params)
    assert_reported(path, errors, key_path, value, allowed)
    assert len(errors) == 1, errors


def test_batch_size_in_defaults_larger_than_the_train_set_is_reported(write_params, raw_params):
    raw_params["defaults"]["batch_size"] = 30
    path, errors = problems(write_params, raw_params)
    assert_reported(path, errors, "defaults.batch_size", "30", ["28"])


def test_batch_size_in_defaults_too_large_is_reported_only_where_it_is_written(
    write_params, raw_params
):
    raw_params["defaults"]["batch_size"] = 30  # no sweep sets batch_size
    path, errors = problems(write_params, raw_params)
    assert_reported(path, errors, "defaults.batch_size", "30", ["28"])
    assert len(errors) == 1, errors


def test_every_problem_is_collected_not_just_the_first(write_params, raw_params):
    raw_params["datasets"]["quad2"]["noise"] = 0.1
    raw_params["defaults"]["lr"] = 0
    raw_params["sweeps"]["placement"]["bn"] = ["none", "prre"]
    raw_params["sweeps"]["depth"]["seed"] = [24, 24]
    raw_params["sweeps"]["other"] = {"depth": "two", "dataset": "nope"}
    raw_params["execution"] = {"engine": "fast", "threads": 0}
    path, errors = problems(write_params, raw_params)
    expected = [
        ("datasets.quad2.noise", "noise"),
        ("defaults.lr", "0"),
        ("sweeps.placement.bn[1]", "prre"),
        ("sweeps.depth.seed[1]", "24"),
        ("sweeps.other.depth", "two"),
        ("sweeps.other.dataset", "nope"),
        ("execution.engine", "fast"),
        ("execution.threads", "0"),
    ]
    for key_path, value in expected:
        assert_reported(path, errors, key_path, value)
    assert len(errors) == len(expected), errors


def test_yaml_syntax_error_names_file_and_line(write_params, raw_params):
    import yaml

    text = yaml.safe_dump(raw_params, sort_keys=False)
    lines = text.splitlines()
    i = lines.index("  bn: none")  # a line inside defaults
    lines[i] = "  bn: [none, pre"  # unclosed flow sequence
    lines.insert(i + 1, "  depth: : 1")
    path = write_params("\n".join(lines) + "\n", name=PARAMS_NAME)
    with pytest.raises(ParamsError) as exc:
        load_params(path)
    (msg,) = exc.value.errors
    assert path.name in msg
    m = re.search(r"line (\d+)", msg)
    assert m, msg
    # The parser notices within a line or two of the broken one (1-based line numbers).
    assert i + 1 <= int(m.group(1)) <= i + 3, msg


def test_duplicate_yaml_key_is_an_error_naming_it(write_params, raw_params):
    import yaml

    text = yaml.safe_dump(raw_params, sort_keys=False)
    text = text.replace("  lr: 0.03\n", "  lr: 0.03\n  lr: 0.3\n")
    path = write_params(text, name=PARAMS_NAME)
    with pytest.raises(ParamsError) as exc:
        load_params(path)
    (msg,) = exc.value.errors
    assert path.name in msg and "lr" in msg and "duplicate" in msg.lower()


def test_unreadable_file_is_a_params_error(tmp_path):
    with pytest.raises(ParamsError) as exc:
        load_params(tmp_path / "absent.yaml")
    assert "absent.yaml" in exc.value.errors[0]


def test_exponent_notation_is_read_as_a_number(write_params, raw_params):
    import yaml

    text = yaml.safe_dump(raw_params, sort_keys=False)
    text = text.replace("  lr: 0.03\n", "  lr: 1e-3\n").replace(
        "  momentum: 0.1\n", "  momentum: 1E-1\n"
    )
    text += "  lrs:\n    lr: [3e-2, 1.5e+1, 2e0]\n"
    params = load_params(write_params(text))
    assert params.defaults.lr == 0.001 and isinstance(params.defaults.lr, float)
    assert params.defaults.momentum == 0.1
    assert [r.lr for r in params.sweeps["lrs"].runs] == [0.03, 15.0, 2.0]


def test_sweep_expands_to_the_cartesian_product_of_its_axes(write_params, raw_params):
    raw_params["sweeps"] = {
        "grid": {
            "activation": ["relu", "tanh"],
            "width": 8,
            "bn": ["none", "pre", "post"],
            "lr": 0.1,
            "seed": [1, 2],
        }
    }
    params = load_params(write_params(raw_params))
    runs = params.sweeps["grid"].runs
    product = list(itertools.product(["relu", "tanh"], ["none", "pre", "post"], [1, 2]))
    assert sorted((r.activation, r.bn, r.seed) for r in runs) == sorted(product)
    assert len(runs) == len(product)
    d = raw_params["defaults"]
    for r in runs:
        assert isinstance(r, RunConfig)
        assert (r.width, r.lr) == (8, 0.1)
        for k in ("dataset", "normalization", "depth", "init", "momentum", "batch_size", "epochs"):
            assert getattr(r, k) == d[k]
    keys = [r.run_key for r in runs]
    assert len(set(keys)) == len(keys)


def test_dataset_and_seed_may_be_axes(write_params, raw_params):
    raw_params["datasets"]["quad5"] = {**raw_params["datasets"]["quad2"], "w": [1, 2, 3, 4, 5]}
    raw_params["sweeps"] = {"ds": {"dataset": ["quad2", "quad5"], "seed": [3, 4, 5]}}
    params = load_params(write_params(raw_params))
    assert sorted((r.dataset, r.seed) for r in params.sweeps["ds"].runs) == sorted(
        itertools.product(["quad2", "quad5"], [3, 4, 5])
    )
    assert params.datasets["quad5"].num_features == 5


def test_huge_sweep_is_refused_without_expanding_it(write_params, raw_params):
    raw_params["datasets"]["quad2"]["num_examples"] = 100
    ten = range(10)
    raw_params["sweeps"] = {
        "huge": {  # 10**7 runs, over the default max_runs; expanding them would take minutes
            "depth": [1 + i for i in ten],
            "width": [1 + i for i in ten],
            "epochs": [1 + i for i in ten],
            "seed": list(ten),
            "batch_size": [2 + i for i in ten],
            "lr": [0.1 * (1 + i) for i in ten],
            "momentum": [0.1 * (1 + i) for i in ten],
        }
    }
    path, errors = problems(write_params, raw_params)
    assert_reported(path, errors, "sweeps.huge", None, ["max_runs"])
    assert re.search(r"10,?000,?000", errors[0]), errors
    assert len(errors) == 1


def test_run_key_is_equal_for_equal_configurations_whatever_the_sweep(write_params, raw_params):
    raw_params["sweeps"] = {
        "a": {"lr": 1, "momentum": 1, "bn": ["pre", "none"], "seed": [7, 8]},
        "b": {"seed": [8, 7], "bn": ["none", "pre"], "momentum": 1.0, "lr": 1.0},
    }
    params = load_params(write_params(raw_params))
    a, b = params.sweeps["a"].runs, params.sweeps["b"].runs
    assert {r.run_key for r in a} == {r.run_key for r in b}
    assert set(a) == set(b)  # int 1 and float 1.0 are the same lr and momentum


@pytest.mark.parametrize(
    ("key", "other"),
    [
        ("dataset", "quad5"),
        ("normalization", "zscore"),
        ("activation", "relu"),
        ("bn", "post"),
        ("depth", 2),
        ("width", 5),
        ("init", "xavier"),
        ("momentum", 0.10000000000000002),
        ("batch_size", 11),
        ("lr", 0.030000000000000002),
        ("epochs", 3),
        ("seed", 25),
    ],
)
def test_run_key_changes_when_any_one_configuration_key_changes(raw_params, key, other):
    raw_params["datasets"]["quad5"] = raw_params["datasets"]["quad2"]
    raw_params["sweeps"] = {"base": {}, "changed": {key: other}}
    params = validate(raw_params)
    (base,), (changed,) = params.sweeps["base"].runs, params.sweeps["changed"].runs
    assert base != changed
    assert base.run_key != changed.run_key
    assert {k for k in CONFIG_KEYS if getattr(base, k) != getattr(changed, k)} == {key}


def test_run_key_is_readable_and_the_same_in_another_process(raw_params):
    cfg = validate(raw_params).sweeps["placement"].runs[0]
    assert cfg.dataset in cfg.run_key and cfg.activation in cfg.run_key
    code = f"from bnmodels.experiment.config import RunConfig\nprint(RunConfig(**{cfg.as_dict()!r}).run_key)\n"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        cwd=REPO,
    )
    assert out.stdout.strip() == cfg.run_key


def test_editing_one_sweep_leaves_every_other_sweep_unchanged(raw_params):
    before = validate(raw_params).sweeps["depth"]
    raw_params["datasets"]["quad9"] = {**raw_params["datasets"]["quad2"], "seed": 9}
    raw_params["sweeps"]["placement"].update(lr=[0.1, 0.2], dataset="quad9", activation="relu")
    raw_params["sweeps"]["new"] = {"width": [2, 3]}
    after = validate(raw_params).sweeps["depth"]
    assert after.runs == before.runs
    assert [r.run_key for r in after.runs] == [r.run_key for r in before.runs]
    del raw_params["sweeps"]["placement"]
    assert validate(raw_params).sweeps["depth"].runs == before.runs


def test_feature_scale_and_shift_default_and_expand_per_feature(raw_params):
    ds = raw_params["datasets"]
    ds["scaled"] = {**ds["quad2"], "feature_scale": 10, "feature_shift": [30, 5]}
    ds["biased"] = {**ds["quad2"], "w": [2, -1, 3], "bias": True}
    params = validate(raw_params)
    q, s, b = params.datasets["quad2"], params.datasets["scaled"], params.datasets["biased"]
    assert (q.feature_scale, q.feature_shift) == ((1.0, 1.0), (0.0, 0.0))
    assert (s.feature_scale, s.feature_shift) == ((10.0, 10.0), (30.0, 5.0))
    assert b.num_features == 2 and b.w == (2.0, -1.0, 3.0)
    assert q.n_train == 28


def test_the_repository_params_file_is_valid():
    path = REPO / "params.yaml"
    if not path.exists():
        pytest.skip("no params.yaml in the repository")
    params = load_params(path)
    assert params.sweeps
    for sweep in params.sweeps.values():
        assert sweep.runs
        assert len({r.run_key for r in sweep.runs}) == len(sweep.runs)
        assert all(r.dataset in params.datasets for r in sweep.runs)


def test_scalar_datasets_section_is_a_params_error(write_params, raw_params):
    raw_params["datasets"] = 5
    path, errors = problems(write_params, raw_params)
    assert_reported(path, errors, "datasets", "5", ["mapping"])


@pytest.mark.parametrize("bad", [["none", "pre"], {"a": 1}])
def test_nested_list_or_mapping_inside_an_axis_is_a_params_error(write_params, raw_params, bad):
    raw_params["sweeps"]["placement"]["bn"] = ["none", bad]
    path, errors = problems(write_params, raw_params)
    assert_reported(path, errors, "sweeps.placement.bn[1]", None, ["pre"])


def test_yaml_merge_keys_are_accepted(write_params):
    text = """
datasets:
  quad2: &quad2
    {num_examples: 40, w: [2, -1], bias: false, delta: 0.01, deg: 2, seed: 420,
     train_fraction: 0.7}
  quad2_other_seed:
    <<: *quad2
    seed: 421
defaults: {dataset: quad2, normalization: none, activation: sigmoid, bn: none, depth: 1,
           width: 4, init: default, momentum: 0.1, batch_size: 10, lr: 0.03, epochs: 2,
           seed: 24}
sweeps:
  both: {dataset: [quad2, quad2_other_seed]}
"""
    params = load_params(write_params(text))
    assert params.datasets["quad2_other_seed"].seed == 421
    assert params.datasets["quad2_other_seed"].w == params.datasets["quad2"].w


def test_a_sweep_may_ask_for_probes_and_only_its_plan_says_so(raw_params, tmp_path):
    from bnmodels.experiment.plan import make_plans

    raw_params["sweeps"]["depth"]["probes"] = True
    params = validate(raw_params)
    assert params.sweeps["depth"].probes and not params.sweeps["placement"].probes
    processed = tmp_path / "processed" / "quad2"
    processed.mkdir(parents=True)
    (processed / "none.pt").write_bytes(b"data")
    plans = make_plans(params, tmp_path / "processed")
    assert plans["depth"]["probes"] is True and "probes" not in plans["placement"]
    # probes change what is recorded, never which runs there are
    del raw_params["sweeps"]["depth"]["probes"]
    assert params.sweeps["depth"].runs == validate(raw_params).sweeps["depth"].runs


def test_probes_must_be_true_or_false(write_params, raw_params):
    raw_params["sweeps"]["depth"]["probes"] = "yes"
    path, errors = problems(write_params, raw_params)
    assert f"{path}: sweeps.depth.probes: 'yes' is not allowed; expected true or false" in errors


# -- the normalization: norm, norm_at, groups, and bn as their shorthand ----------------


def _runs(raw_params, **sweep):
    raw_params["sweeps"] = {"s": sweep}
    return validate(raw_params).sweeps["s"].runs


def test_bn_is_the_shorthand_of_norm_batch_at_its_placement(raw_params):
    for bn in ("pre", "post"):
        (short,) = _runs(raw_params, bn=bn)
        (spelled,) = _runs(raw_params, norm="batch", norm_at=bn)
        assert short == spelled and short.run_key == spelled.run_key
        assert (short.bn, short.norm, short.norm_at, short.groups) == (bn, "batch", bn, 0)
    (none,) = _runs(raw_params, bn="none")
    assert none == _runs(raw_params, norm="none")[0]
    assert (none.norm, none.norm_at) == ("none", "none")


def test_a_sweep_over_every_norm_gives_each_its_own_run_and_key(raw_params):
    runs = _runs(raw_params, norm=["none", "batch", "layer", "group", "rms"], groups=2, width=4)
    assert [(r.norm, r.norm_at, r.groups, r.bn) for r in runs] == [
        ("none", "none", 0, "none"),
        ("batch", "pre", 0, "pre"),  # norm_at defaults to pre
        ("layer", "pre", 0, "none"),
        ("group", "pre", 2, "none"),
        ("rms", "pre", 0, "none"),
    ]
    assert len({r.run_key for r in runs}) == 5
    assert "-norm_group2_pre-" in runs[3].run_key and "-bn_pre-" in runs[1].run_key
    assert runs[3].as_dict()["groups"] == 2 and "groups" not in runs[2].as_dict()
    assert {"norm", "norm_at"} <= runs[0].as_dict().keys()  # what MLflow logs as params
    assert all(RunConfig(**r.as_dict()) == r for r in runs)  # what a plan stores


def test_a_placement_axis_does_not_duplicate_the_runs_without_a_norm(raw_params):
    runs = _runs(raw_params, norm=["none", "layer"], norm_at=["pre", "post"])
    assert [(r.norm, r.norm_at) for r in runs] == [
        ("none", "none"),
        ("layer", "pre"),
        ("layer", "post"),
    ]


def test_a_sweeps_norm_replaces_the_defaults_bn_and_its_bn_the_defaults_norm(raw_params):
    raw_params["defaults"]["bn"] = "post"
    (layer,) = _runs(raw_params, norm="layer")  # at the defaults' placement
    assert (layer.norm, layer.norm_at, layer.bn) == ("layer", "post", "none")
    (placed,) = _runs(raw_params, norm_at="pre")  # the defaults' BatchNorm, moved
    assert (placed.norm, placed.bn) == ("batch", "pre")
    del raw_params["defaults"]["bn"]
    raw_params["defaults"].update(norm="group", groups=2)
    (short,) = _runs(raw_params, bn="pre")
    assert (short.norm, short.groups) == ("batch", 0)


def test_widths_up_to_256_and_depth_8_are_valid(raw_params):
    runs = _runs(raw_params, width=[4, 16, 64, 256], depth=8)
    assert [(r.width, r.depth) for r in runs] == [(4, 8), (16, 8), (64, 8), (256, 8)]


@pytest.mark.parametrize(
    ("sweep", "where", "words"),
    [
        ({"bn": "pre", "norm": "layer"}, "", ["bn and norm", "shorthand"]),
        ({"norm": "group", "width": 4}, "", ["norm: group with no groups", "divisor"]),
        ({"norm": "group", "groups": 3, "width": 4}, "", ["groups: 3 at width 4", "divisor"]),
        ({"norm": "group", "groups": 4, "width": 4}, "", ["groups: 4 at width 4", "2 units"]),
        ({"norm": "batchh"}, ".norm", ["one of none, batch, layer, group, rms"]),
        ({"norm": "layer", "norm_at": "mid"}, ".norm_at", ["one of pre, post"]),
    ],
)
def test_a_bad_normalization_is_a_clean_error_naming_the_sweep(
    write_params, raw_params, sweep, where, words
):
    raw_params["sweeps"] = {"s": sweep}
    path, errors = problems(write_params, raw_params)
    assert_reported(path, errors, "sweeps.s" + where, None, words)
