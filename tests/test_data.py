"""Generation, split, normalization and storage of data sets (SPEC 2, 3)."""

from __future__ import annotations

import re

import pytest
import torch

from bnmodels.experiment.data import Split, generate, load_split, normalize, save_split
from bnmodels.experiment.params import validate

DATASET = {
    "num_examples": 200,
    "w": [2, -1],
    "bias": False,
    "delta": 0.01,
    "deg": 2,
    "seed": 420,
    "train_fraction": 0.7,
}


def dataset_spec(raw_params, **overrides):
    """A DatasetSpec built the public way, from a params mapping."""
    raw_params["datasets"] = {"d": {**DATASET, **overrides}}
    raw_params["defaults"]["dataset"] = "d"
    raw_params["sweeps"] = {"s": {}}
    return validate(raw_params).datasets["d"]


def spec_pseudo_code(d: dict):
    """SPEC 2 line by line, from the raw params entry; returns x_tr, y_tr, x_te, y_te."""
    g = torch.Generator().manual_seed(d["seed"])
    w = torch.tensor(d["w"], dtype=torch.float32)
    coef, intercept = (w[:-1], float(w[-1])) if d["bias"] else (w, 0)
    x = torch.randn(d["num_examples"], len(coef), generator=g)
    y = x.pow(d["deg"]) @ coef.reshape(-1, 1) + intercept
    y = y + torch.randn(y.shape, generator=g) * d["delta"]
    scale, shift = d.get("feature_scale", 1), d.get("feature_shift", 0)
    scale = torch.tensor(scale, dtype=torch.float32) if isinstance(scale, list) else scale
    shift = torch.tensor(shift, dtype=torch.float32) if isinstance(shift, list) else shift
    x = x * scale + shift
    perm = torch.randperm(d["num_examples"], generator=g)
    n_train = int(d["num_examples"] * d["train_fraction"])
    tr, te = perm[:n_train], perm[n_train:]
    return x[tr], y[tr], x[te], y[te]


GENERATION_CASES = {
    "course quad2": {},
    "bias true": {"w": [2, -1, 3], "bias": True},
    "bias true, one feature": {"w": [0.5, -4], "bias": True},
    "deg 1": {"deg": 1},
    "deg 3, five features": {"deg": 3, "w": [2, -1, 3, 1, 2]},
    "large noise": {"delta": 0.5},
    "no noise": {"delta": 0},
    "scale and shift as numbers": {"feature_scale": 0.3, "feature_shift": -3.7},
    "scale and shift as lists": {"feature_scale": [10, 0.1], "feature_shift": [30, 5]},
    "bias with lists": {
        "w": [1, 2, -0.25],
        "bias": True,
        "feature_scale": [0.3, 7],
        "feature_shift": [1, -2],
    },
    "odd split": {"num_examples": 37, "train_fraction": 0.55, "seed": 7},
}


@pytest.mark.parametrize("overrides", GENERATION_CASES.values(), ids=GENERATION_CASES.keys())
def test_generate_matches_the_spec_pseudo_code_bit_for_bit(raw_params, overrides):
    d = {**DATASET, **overrides}
    split = generate(dataset_spec(raw_params, **overrides))
    expected = spec_pseudo_code(d)
    n_train = int(d["num_examples"] * d["train_fraction"])
    assert split.x_train.shape == (n_train, len(d["w"]) - d["bias"])
    assert split.y_train.shape == (n_train, 1)
    assert split.x_test.shape[0] == split.y_test.shape[0] == d["num_examples"] - n_train
    for got, want in zip(split.tensors(), expected, strict=True):
        assert got.dtype == torch.float32
        assert torch.equal(got, want)


def test_generate_is_a_pure_function_of_the_spec(raw_params):
    spec = dataset_spec(raw_params)
    torch.manual_seed(0)
    a = generate(spec)
    torch.rand(100)  # global RNG use in between must not matter
    b = generate(spec)
    assert all(torch.equal(s, t) for s, t in zip(a.tensors(), b.tensors(), strict=True))
    c = generate(dataset_spec(raw_params, seed=421))
    assert not torch.equal(a.x_train, c.x_train)


def _skewed_split(n_train=50, n_test=20, features=3) -> Split:
    """Train and test rows from different distributions, so leaked test stats would show."""
    g = torch.Generator().manual_seed(3)
    x_train = torch.randn(n_train, features, generator=g) * torch.tensor([2.0, 0.5, 30.0]) + 4
    x_test = torch.randn(n_test, features, generator=g) * 9 - 20
    return Split(
        x_train, torch.randn(n_train, 1, generator=g), x_test, torch.randn(n_test, 1, generator=g)
    )


def test_zscore_uses_train_mean_and_unbiased_std_for_train_and_test_rows():
    split = _skewed_split()
    out = normalize(split, "zscore", "skewed")
    xt = split.x_train.double()
    mean = xt.mean(0)
    std = torch.sqrt(((xt - mean) ** 2).sum(0) / (xt.shape[0] - 1))  # correction 1
    torch.testing.assert_close(out.x_train.double(), (xt - mean) / std, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        out.x_test.double(), (split.x_test.double() - mean) / std, rtol=1e-5, atol=1e-5
    )
    # Unbiased: train columns have sample std exactly 1 with correction 1 (not with 0).
    torch.testing.assert_close(out.x_train.double().std(0), torch.ones(3, dtype=torch.float64))
    assert out.x_train.dtype == out.x_test.dtype == torch.float32


def test_minmax_maps_train_rows_onto_zero_one_and_test_rows_with_train_bounds():
    split = _skewed_split()
    out = normalize(split, "minmax", "skewed")
    xt = split.x_train.double()
    lo, hi = xt.min(0).values, xt.max(0).values
    torch.testing.assert_close(out.x_train.double(), (xt - lo) / (hi - lo), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        out.x_test.double(), (split.x_test.double() - lo) / (hi - lo), rtol=1e-5, atol=1e-5
    )
    assert torch.equal(out.x_train.min(0).values, torch.zeros(3))
    assert torch.equal(out.x_train.max(0).values, torch.ones(3))
    assert (out.x_test < 0).any()  # test rows come from elsewhere; not re-fitted to [0, 1]


@pytest.mark.parametrize("method", ["none", "zscore", "minmax"])
def test_normalization_ignores_test_rows_and_leaves_labels_untouched(method):
    split = _skewed_split()
    other = Split(split.x_train, split.y_train, split.x_test * 100 + 7, split.y_test)
    a, b = normalize(split, method, "skewed"), normalize(other, method, "skewed")
    assert torch.equal(a.x_train, b.x_train)  # train statistics only
    assert torch.equal(a.y_train, split.y_train) and torch.equal(a.y_test, split.y_test)
    if method == "none":
        assert all(torch.equal(s, t) for s, t in zip(a.tensors(), split.tensors(), strict=True))


@pytest.mark.parametrize("method", ["zscore", "minmax"])
def test_constant_train_column_is_an_error_naming_data_set_and_column(method):
    split = _skewed_split()
    x_train = split.x_train.clone()
    x_train[:, 1] = 2.5  # constant on the train rows only; the test rows still vary
    bad = Split(x_train, split.y_train, split.x_test, split.y_test)
    with pytest.raises(ValueError) as exc:
        normalize(bad, method, "flatland")
    msg = str(exc.value)
    assert "flatland" in msg
    assert re.search(r"column\S*\s+1\b", msg), msg
    assert not re.search(r"column\S*\s+[02]\b", msg), msg  # only the constant one is named


def test_unknown_normalization_is_an_error():
    with pytest.raises(ValueError):
        normalize(_skewed_split(), "robust", "skewed")


def test_saved_split_loads_back_exactly(tmp_path, raw_params):
    split = normalize(generate(dataset_spec(raw_params, feature_scale=[10, 0.1])), "zscore")
    path = tmp_path / "nested" / "d.pt"
    save_split(split, path)
    back = load_split(path)
    for got, want in zip(back.tensors(), split.tensors(), strict=True):
        assert got.dtype == want.dtype and torch.equal(got, want)


def test_saving_the_same_split_twice_gives_identical_bytes(tmp_path, raw_params):
    split = generate(dataset_spec(raw_params))
    save_split(split, tmp_path / "a.pt")
    save_split(generate(dataset_spec(raw_params)), tmp_path / "b.pt")
    first = (tmp_path / "a.pt").read_bytes()
    save_split(split, tmp_path / "a.pt")  # overwrite in place
    assert (tmp_path / "a.pt").read_bytes() == first == (tmp_path / "b.pt").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]  # no temp files left
