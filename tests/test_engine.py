"""The batched engine against the reference engine, and its independence property."""

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch
from configs import run_config

from bnmodels.experiment.config import DatasetSpec, RunConfig
from bnmodels.experiment.data import Split, generate, normalize
from bnmodels.training.batched import train_group, train_runs
from bnmodels.training.reference import train_reference

torch.set_num_threads(1)

ALL_SHAPES = list(
    itertools.product(
        ["sigmoid", "relu", "tanh"],
        ["none", "pre", "post"],
        ["default", "xavier", "kaiming"],
        [1, 2, 3, 4],
    )
)


def spec(n=200, w=(2.0, -1.0), seed=420, **kw) -> DatasetSpec:
    nf = len(w)
    base = dict(
        name="d",
        num_examples=n,
        w=tuple(w),
        bias=False,
        delta=0.01,
        deg=2,
        seed=seed,
        train_fraction=0.7,
        feature_scale=(1.0,) * nf,
        feature_shift=(0.0,) * nf,
    )
    return DatasetSpec(**{**base, **kw})


def cfg(**kw) -> RunConfig:
    return run_config(
        **{"dataset": "d", "depth": 2, "batch_size": 20, "lr": 0.01, "epochs": 40, **kw}
    )


@pytest.fixture(scope="module")
def split():
    return generate(spec())


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.abs(a - b) / np.maximum(np.abs(a), 1e-300)


def perturbed(s: Split, eps: float) -> Split:
    """The same data in float64, features scaled by (1 + eps)."""
    s = s.to(dtype=torch.float64)
    return Split(s.x_train * (1 + eps), s.y_train, s.x_test * (1 + eps), s.y_test)


@pytest.fixture(scope="module")
def float64_pairs(split):
    """Every activation x BN mode x init x depth 1-4, 40 epochs, lr 0.01, both engines."""
    cfgs = [cfg(activation=a, bn=b, init=i, depth=d) for a, b, i, d in ALL_SHAPES]
    batched = train_runs(cfgs, [split] * len(cfgs), dtype=torch.float64)
    refs = [train_reference(c, split, dtype=torch.float64) for c in cfgs]
    return cfgs, batched, refs


def differences(a, b) -> dict[str, float]:
    """Largest relative difference of each compared quantity of two results: per-epoch
    history columns (elementwise), final weights and BN running statistics (relative to
    the tensor's largest entry)."""
    out = {}
    for col, v in a.history.items():
        tol_scale = np.maximum(np.abs(v), 1e-12)  # dead_fraction is often exactly 0
        out[col] = float(np.nanmax(np.abs(v - b.history[col]) / tol_scale, initial=0.0))
    for k, v in a.state_dict.items():
        if v.is_floating_point():
            w = b.state_dict[k].double()
            out[k] = float((v.double() - w).abs().max() / v.double().abs().max().clamp_min(1e-300))
    return out


@pytest.mark.slow  # the float64 cross-check trains every pair twice (~20 s)
def test_float64_engines_agree_except_where_the_reference_itself_is_chaotic(split, float64_pairs):
    """Every activation x BN mode x init x depth 1-4, 40 epochs, lr 0.01, float64: per-epoch
    train/test MSE and diagnostics, final weights and BN running statistics agree to 1e-8
    relative (a last-step gradient's spread, a derivative of the trajectory, to 1e-6).

    A run whose reference is chaotic -- it parts from *itself* when its inputs are scaled
    by 1 +- 1e-12 or 1 + 1e-11 -- may part too, but never by more than 10x what those
    perturbations cause (the engines differ by rounding, ~1e-16, far below 1e-12); such runs must stay
    a small minority, and their first 5 epochs must still agree to 1e-8."""
    cfgs, batched, refs = float64_pairs
    chaotic = []
    for c, b, r in zip(cfgs, batched, refs, strict=True):
        assert not r.diverged and not b.diverged
        assert r.state_dict.keys() == b.state_dict.keys()
        d = differences(r, b)
        tol = {k: 1e-6 if k.startswith("grad_std") else 1e-8 for k in d}
        over = {k: v for k, v in d.items() if v > tol[k]}
        if not over:
            continue
        # how far the reference parts from itself: the largest of three perturbations (one
        # can leave a chaotic run close by chance; on some CPUs 1e-12 alone did)
        parted = [
            differences(r, train_reference(c, perturbed(split, eps), dtype=torch.float64))
            for eps in (1e-12, -1e-12, 1e-11)
        ]
        p = {k: max(q[k] for q in parted) for k in parted[0]}
        for k, v in over.items():
            assert v <= 10 * p[k], (c.run_key, k, v, p[k])
        for col in ("train_mse", "test_mse"):
            assert rel(r.history[col][:5], b.history[col][:5]).max() <= 1e-8, (c.run_key, col)
        chaotic.append(c.run_key)
    assert len(chaotic) <= len(cfgs) // 10, chaotic


def test_float32_first_five_epochs_match_reference(split):
    """float32, 5 epochs, to 1e-5; the rare run whose float32 reference parts from itself
    under a perturbation of a few ulps (inputs scaled by 1 + 1e-6) is held to 10x that."""
    cfgs = [cfg(activation=a, bn=b, init=i, depth=d, epochs=5) for a, b, i, d in ALL_SHAPES]
    batched = train_runs(cfgs, [split] * len(cfgs))
    chaotic = []
    for c, b in zip(cfgs, batched, strict=True):
        r = train_reference(c, split)
        d = max(rel(r.history[col], b.history[col]).max() for col in ("train_mse", "test_mse"))
        if d <= 1e-5:
            continue
        s32 = Split(
            split.x_train * (1 + 1e-6), split.y_train, split.x_test * (1 + 1e-6), split.y_test
        )
        p = train_reference(c, s32)
        chaos = max(rel(r.history[col], p.history[col]).max() for col in ("train_mse", "test_mse"))
        assert d <= 10 * chaos, (c.run_key, d, chaos)
        chaotic.append(c.run_key)
    assert len(chaotic) <= len(cfgs) // 10, chaotic


def test_broadcast_products_used_on_cuda_also_match_reference_in_float64(split):
    """CUDA multiplies the tiny matrices by broadcasting; check that path here on the CPU."""
    cfgs = [cfg(activation=a, bn=b, init=i, depth=3, epochs=10) for a, b, i, _ in ALL_SHAPES[::4]]
    batched = train_group(cfgs, [split] * len(cfgs), dtype=torch.float64, broadcast=True)
    for c, b in zip(cfgs, batched, strict=True):
        r = train_reference(c, split, dtype=torch.float64)
        d = max(rel(r.history[col], b.history[col]).max() for col in ("train_mse", "test_mse"))
        assert d <= 1e-8, (c.run_key, d)


def _same_bits(a, b):
    for col in a.history:
        assert np.array_equal(a.history[col], b.history[col], equal_nan=True), col
    for k in a.state_dict:
        assert torch.equal(a.state_dict[k], b.state_dict[k]), k
    assert a.final == b.final
    assert a.diverged == b.diverged


def test_a_run_alone_and_among_200_others_is_bit_for_bit_the_same(split):
    rng = np.random.default_rng(0)
    others = [
        cfg(
            activation=rng.choice(["sigmoid", "relu", "tanh"]).item(),
            bn=rng.choice(["none", "pre", "post"]).item(),
            init=rng.choice(["default", "xavier", "kaiming"]).item(),
            momentum=float(rng.choice([0.1, 0.5])),
            lr=float(rng.choice([0.01, 0.1, 0.5])),
            seed=int(rng.integers(0, 50)),
            epochs=8,
        )
        for _ in range(200)
    ]
    others = list(dict.fromkeys(others))
    zsplit = normalize(split, "zscore")
    targets = [
        cfg(activation="relu", bn="post", momentum=0.5, epochs=8, seed=7),
        cfg(activation="tanh", bn="pre", init="xavier", lr=0.1, epochs=8, seed=3),
        cfg(activation="sigmoid", bn="none", epochs=8, normalization="zscore", seed=99),
    ]
    pool = others + targets
    datas = [zsplit if c.normalization == "zscore" else split for c in pool]
    together = train_group(pool, datas)
    for t, res in zip(targets, together[-3:], strict=True):
        alone = train_group([t], [zsplit if t.normalization == "zscore" else split])[0]
        _same_bits(alone, res)
    # and in a different order and company, e.g. a 16-run slice
    sub = train_group(pool[-16:][::-1], datas[-16:][::-1])
    _same_bits(sub[0], together[-1])


def test_wide_regression_runs_train_unpadded_with_the_same_bits_in_any_company(split, monkeypatch):
    """Width a multiple of 32, regression, batch or no norm: no padding runs (run_pad 1),
    and a run's numbers are those it has alone, in company, and padded to RUN_PAD."""
    from bnmodels.training import batched

    wide = [
        cfg(width=32, activation=a, bn=b, seed=s, epochs=3)
        for a, b, s in itertools.product(
            ["sigmoid", "relu", "tanh"], ["none", "pre", "post"], [1, 2]
        )
    ]
    datas = [split] * len(wide)
    assert batched.run_pad(wide, datas, "cpu") == 1
    assert batched.run_pad([cfg(width=16)], [split], "cpu") == batched.RUN_PAD
    assert batched.run_pad([cfg(width=32, norm="layer")], [split], "cpu") == batched.RUN_PAD
    klass = dataclasses.replace(split, num_class=2)
    assert batched.run_pad([cfg(width=32)], [klass], "cpu") == batched.RUN_PAD
    together = train_group(wide, datas)  # 18 runs, none of them padding
    for k in (0, 7, 17):
        _same_bits(train_group([wide[k]], [split])[0], together[k])
    some = train_group(wide[5:12][::-1], datas[5:12])
    _same_bits(some[0], together[11])
    monkeypatch.setattr(batched, "run_pad", lambda *a: batched.RUN_PAD)
    padded = train_group(wide, datas)  # padded to 32 runs as before run_pad
    for a, b in zip(together, padded, strict=True):
        _same_bits(a, b)


def test_divergence_is_detected_per_run_and_does_not_touch_its_neighbours(split):
    calm = cfg(bn="pre", epochs=6)
    wild = cfg(bn="none", lr=1e4, epochs=6)
    both = train_group([wild, calm], [split, split])
    alone = train_group([calm], [split])[0]
    _same_bits(alone, both[1])
    ref = train_reference(wild, split)
    assert both[0].diverged and ref.diverged
    np.testing.assert_array_equal(
        np.isnan(both[0].history["train_mse"]), np.isnan(ref.history["train_mse"])
    )
    assert math.isnan(both[0].final_test_mse)


def test_groups_mix_data_sets_normalizations_and_momenta(split):
    other = generate(spec(seed=7))
    cfgs = [
        cfg(dataset="d", momentum=0.1, bn="pre", epochs=4),
        cfg(dataset="e", momentum=0.9, bn="pre", epochs=4),
        cfg(dataset="d", normalization="minmax", bn="post", epochs=4),
    ]
    datas = [split, other, normalize(split, "minmax")]
    batched = train_runs(cfgs, datas, dtype=torch.float64)
    for c, d, b in zip(cfgs, datas, batched, strict=True):
        r = train_reference(c, d, dtype=torch.float64)
        assert rel(r.history["test_mse"], b.history["test_mse"]).max() <= 1e-8, c.run_key


@pytest.mark.parametrize("n_train_rows, batch_size", [(141, 10), (140, 30), (140, 139)])
def test_short_and_single_row_last_batches_follow_the_reference(n_train_rows, batch_size):
    s = generate(spec(n=n_train_rows * 10 // 7 + 1))
    s = dataclasses.replace(s, x_train=s.x_train[:n_train_rows], y_train=s.y_train[:n_train_rows])
    c = cfg(bn="pre", batch_size=batch_size, epochs=3)
    b = train_runs([c], [s], dtype=torch.float64)[0]
    r = train_reference(c, s, dtype=torch.float64)
    assert rel(r.history["train_mse"], b.history["train_mse"]).max() <= 1e-10
    assert torch.equal(
        b.state_dict["blocks.0.norm.num_batches_tracked"],
        r.state_dict["blocks.0.norm.num_batches_tracked"],
    )


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cuda_engine_matches_cpu_reference_in_float64(split):
    cfgs = [cfg(activation=a, bn=b, depth=2, epochs=10) for a, b, *_ in ALL_SHAPES[::12]]
    batched = train_runs(cfgs, [split] * len(cfgs), device="cuda", dtype=torch.float64)
    for c, b in zip(cfgs, batched, strict=True):
        r = train_reference(c, split, dtype=torch.float64)
        assert rel(r.history["test_mse"], b.history["test_mse"]).max() <= 1e-8, c.run_key


@cuda
def test_cuda_run_alone_and_among_others_is_bit_for_bit_the_same(split):
    pool = [
        cfg(activation=a, bn=b, init=i, seed=s, epochs=4)
        for (a, b, i, _), s in itertools.product(ALL_SHAPES[::4], range(8))
    ]
    together = train_group(pool, [split] * len(pool), device="cuda")
    for k in (0, len(pool) // 2, len(pool) - 1):
        _same_bits(train_group([pool[k]], [split], device="cuda")[0], together[k])


def test_width_one_and_a_full_batch_match_the_reference_including_spreads(split):
    """One hidden unit: a layer's weight spread is over one value (0, not NaN)."""
    cfgs = [cfg(width=1, bn=b, epochs=4) for b in ("none", "pre", "post")]
    cfgs.append(cfg(batch_size=split.x_train.shape[0], bn="pre", epochs=4))
    for c in cfgs:
        b = train_runs([c], [split], dtype=torch.float64)[0]
        r = train_reference(c, split, dtype=torch.float64)
        for col, ref_values in r.history.items():
            np.testing.assert_allclose(
                b.history[col], ref_values, rtol=1e-8, atol=1e-12, err_msg=f"{c.run_key} {col}"
            )


@cuda
def test_cuda_classification_probes_and_precise_bn_match_the_cpu_reference(split):
    """The new columns on the GPU path (broadcast products, CUDA graphs): classification
    runs, landscape probes and precise BN, against the reference engine in float64."""
    from bnmodels.experiment.config import ClusterSpec

    blobs = generate(ClusterSpec("b", 3, 60, 2, 2.0, 1.5, 420, 0.7, (1.0,) * 2, (0.0,) * 2))
    cfgs = [
        cfg(dataset=ds, bn=b, activation=a, epochs=4, batch_size=20)
        for ds in ("d", "b")
        for a, b, *_ in ALL_SHAPES[::12]
    ]
    datas = [split if c.dataset == "d" else blobs for c in cfgs]
    batched = train_runs(cfgs, datas, device="cuda", dtype=torch.float64, probes=True)
    for c, d, b in zip(cfgs, datas, batched, strict=True):
        r = train_reference(c, d, dtype=torch.float64, probes=True)
        for col, values in r.history.items():
            np.testing.assert_allclose(b.history[col], values, rtol=1e-8, atol=1e-12, err_msg=col)
        assert b.precise_bn.keys() == r.precise_bn.keys()
        for k, v in r.precise_bn.items():
            assert b.precise_bn[k] == pytest.approx(v, rel=1e-8), (c.run_key, k)


def test_width_64_depth_8_of_every_norm_matches_the_reference_in_float64(split):
    """The widest settings params allow in practice, with runs of each norm in a group of
    their own (batched.SPLIT_NORMS_WIDTH), 2 epochs."""
    from bnmodels.training.batched import SPLIT_NORMS_WIDTH, group_key

    norms = [
        dict(bn="none"),
        dict(bn="pre"),
        dict(norm="layer", norm_at="post"),
        dict(norm="group", groups=4),
        dict(norm="rms", norm_at="post"),
    ]
    cfgs = [cfg(width=64, depth=8, epochs=2, activation="relu", **n) for n in norms]
    assert 64 >= SPLIT_NORMS_WIDTH and len({group_key(c, split) for c in cfgs}) == len(cfgs)
    batched = train_runs(cfgs, [split] * len(cfgs), dtype=torch.float64)
    for c, b in zip(cfgs, batched, strict=True):
        r = train_reference(c, split, dtype=torch.float64)
        assert not r.diverged and not b.diverged
        for col, ref_values in r.history.items():
            np.testing.assert_allclose(
                b.history[col], ref_values, rtol=1e-8, atol=1e-12, err_msg=f"{c.run_key} {col}"
            )
