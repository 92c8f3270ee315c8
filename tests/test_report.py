"""The report: sections, claims from planted effects, NaN safety, byte stability."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from configs import RUN_DEFAULTS

from bnmodels.errors import ParamsError
from bnmodels.experiment.config import CONFIG_KEYS
from bnmodels.report import build, plots
from bnmodels.report.build import SweepData, build_report
from bnmodels.study.claim import validate_claims

SEEDS = tuple(range(24, 34))  # 10: the exact test can then reach 0.002
EPOCHS = 6
DEFAULTS = {**RUN_DEFAULTS, "epochs": EPOCHS}
PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def make_sweep(axes, final_mse, *, fixed=None, diverge_at=None, grad_decades=None, rng_seed=0):
    """A sweep's tables in the layout of runs.csv, history.csv and diagnostics.json.

    final_mse(cfg) is the noise-free final test MSE; each seed multiplies it by a shared
    per-seed factor (same init and batches) and a small own noise. diverge_at(cfg) gives
    the epoch at which a run's metrics become NaN, or None.
    """
    rng = np.random.default_rng(rng_seed)
    seed_factor = dict(zip(SEEDS, np.exp(rng.normal(0, 0.3, len(SEEDS))), strict=True))
    runs, hist, diag = [], [], {}
    for values in itertools.product(*axes.values()):
        for seed in SEEDS:
            cfg = {
                **DEFAULTS,
                **(fixed or {}),
                **dict(zip(axes, values, strict=True)),
                "seed": seed,
            }
            key = "-".join(str(cfg[k]) for k in CONFIG_KEYS)
            final = final_mse(cfg) * seed_factor[seed] * math.exp(rng.normal(0, 0.05))
            epochs = np.arange(1, EPOCHS + 1)
            test = final * (1 + 3 * np.exp(-(epochs - 1)))  # (epochs,) decreasing to final
            train = 0.9 * test
            at = diverge_at(cfg) if diverge_at else None
            if at is not None:
                test[at - 1 :], train[at - 1 :] = np.nan, np.nan
            n_layers = cfg["depth"] + 1
            decades = grad_decades(cfg) if grad_decades else 0.5
            for e in epochs:
                row = {
                    "run_key": key,
                    "epoch": e,
                    "train_mse": train[e - 1],
                    "test_mse": test[e - 1],
                }
                for i in range(1, n_layers + 1):
                    ok = at is None or e < at
                    scale = 10.0 ** (-decades * (n_layers - i)) * math.exp(rng.normal(0, 0.1))
                    row[f"grad_std_l{i}"] = scale if ok else np.nan
                    row[f"weight_std_l{i}"] = 0.5 if ok else np.nan
                dead = (
                    0.1 * (cfg["bn"] == "none") * e / EPOCHS
                    if cfg["activation"] == "relu"
                    else None
                )
                row["dead_fraction"] = (
                    np.nan if dead is None or at is not None and e >= at else dead
                )
                hist.append(row)
            sizes = [2 * 4] + [4 * 4] * (n_layers - 2) + [4]
            grads = [
                list(rng.normal(0, 10.0 ** (-decades * (n_layers - i)), s))
                for i, s in enumerate(sizes, start=1)
            ]
            if at is not None:
                grads = [[math.nan] * len(g) for g in grads]
            diag[key] = {"bn_running_mean": [], "bn_running_var": [], "weight_grad": grads}
            runs.append(
                {
                    **cfg,
                    "run_key": key,
                    "mlflow_run_id": "",
                    "final_train_mse": train[-1],
                    "final_test_mse": test[-1],
                    "best_test_mse": np.nanmin(test) if np.isfinite(test).any() else np.nan,
                    "diverged": at is not None,
                }
            )
    return SweepData(pd.DataFrame(runs), pd.DataFrame(hist), diag, {**axes, "seed": list(SEEDS)})


def depth_sweep(bn_factor=0.5, per_layer=0.6, activations=("sigmoid",)):
    """The notes' depth sweep in miniature: BN multiplies the error by bn_factor, and by
    per_layer more for each hidden layer beyond the first."""

    def mse(cfg):
        f = bn_factor * per_layer ** (cfg["depth"] - 1) if cfg["bn"] == "pre" else 1.0
        return 30.0 * f

    return make_sweep(
        {"activation": list(activations), "bn": ["none", "pre"], "depth": [1, 2]},
        mse,
        fixed={"dataset": "quad5", "batch_size": 50},
        grad_decades=lambda cfg: 1.0 if cfg["bn"] == "none" else 0.1,
    )


def user_sweep():
    """A sweep the report has never heard of, with diverged runs: all of one configuration
    (lr 0.3, xavier) and one seed of another."""
    return make_sweep(
        {"init": ["default", "xavier"], "lr": [0.01, 0.3]},
        lambda cfg: 2.0 if cfg["lr"] == 0.01 else 1.0,
        fixed={"activation": "relu", "depth": 2},
        diverge_at=lambda cfg: (
            2 if cfg["lr"] == 0.3 and (cfg["init"] == "xavier" or cfg["seed"] == 25) else None
        ),
        rng_seed=1,
    )


BN_ALL = {
    "sweep": "depth",
    "compare": {"bn": "pre"},
    "against": {"bn": "none"},
    "metric": "final_test_mse",
}
BN = {**BN_ALL, "where": {"activation": "sigmoid"}}
CLAIMS = {
    "bn_lowers": {**BN, "says": "BN lowers the error", "expect": "lower"},
    "bn_deeper": {
        **BN,
        "says": "more with depth",
        "kind": "trend",
        "along": "depth",
        "expect": "lower",
    },
    "bn_evens": {**BN, "says": "BN evens gradients", "metric": "grad_spread", "expect": "lower"},
    "elsewhere": {
        **BN_ALL,
        "says": "a claim on a sweep not run",
        "sweep": "other",
        "expect": "lower",
    },
}


def claims_for(sweep: SweepData, specs=None):
    """The claims `specs` (as in params.yaml) validated against `sweep` as `depth` (and,
    for claims on another sweep, as `other`)."""
    errors = []

    class Collect:
        def add(self, path, value, allowed):
            errors.append(f"{path}: {value!r}: {allowed}")

        def raw(self, path, message):
            errors.append(f"{path}: {message}")

    runs = sweep.runs[list(CONFIG_KEYS)].to_dict("records")
    # primary unless said otherwise: what the planted effects test is the verdict path
    specs = {k: {"primary": True, **v} for k, v in (specs or CLAIMS).items()}
    claims = validate_claims(specs, {"depth": runs, "other": runs}, Collect())
    if errors:
        raise ParamsError(errors)
    return list(claims.values())


def verdicts(sweep: SweepData, specs=None) -> dict[str, str]:
    rep = build_report({"depth": sweep}, claims_for(sweep, specs))
    return rep.claims.set_index("id")["verdict"].to_dict()


@pytest.fixture(scope="module")
def synthetic():
    sweeps = {"depth": depth_sweep(), "my_sweep": user_sweep()}
    return sweeps, build_report(sweeps, claims_for(sweeps["depth"]))


CURVES = ("train_mse", "test_mse")


def test_report_has_claims_method_and_a_section_per_sweep(synthetic):
    sweeps, rep = synthetic
    md = rep.markdown
    for heading in ("## Claims", "## Method", "## Sweep `depth`", "## Sweep `my_sweep`"):
        assert heading in md
    assert md.index("## Claims") < md.index("## Sweep `depth`") < md.index("## Sweep `my_sweep`")
    assert "nan" not in md.lower().replace("nano", "")
    # Every linked figure exists, relative to reports/report.md, and every figure is linked.
    links = re.findall(r"\]\((figures/[^)]+)\)", md)
    assert sorted(links) == sorted(f"figures/{k}" for k in rep.figures)
    assert {
        "depth_test_curves.png",
        "depth_grad_layers.png",
        "depth_grad_violins.png",
        "my_sweep_test_curves.png",
        "my_sweep_lr_curve.png",
        "my_sweep_dead_fraction.png",
    } <= set(rep.figures)
    n_configs = 1 * 2 * 2 + 2 * 2
    assert len(rep.summary) == n_configs
    assert (rep.summary["n_seeds"] == len(SEEDS)).all()
    assert set(rep.plots) == {f"loss/{s}_{c}" for s in ("depth", "my_sweep") for c in CURVES}
    assert len(rep.plots["loss/depth_test_mse"]) == 4 * EPOCHS


def test_report_files_are_byte_identical_when_generated_twice(synthetic):
    sweeps, rep = synthetic
    first = rep.files()
    again = build_report(sweeps, claims_for(sweeps["depth"])).files()
    assert list(first) == list(again)
    for name in first:
        assert first[name] == again[name], name
    # The same figure rendered twice, too.
    fig = next(iter(rep.figures.values()))
    assert plots.png_bytes(fig) == plots.png_bytes(fig)
    assert first["figures/depth_test_curves.png"].startswith(b"\x89PNG")
    assert b"Software" not in first["figures/depth_test_curves.png"]
    assert {"report.md", "summary.csv", "claims.csv", "metrics.json"} <= set(first)


def test_unknown_sweep_gets_a_generic_section(synthetic):
    _, rep = synthetic
    section = rep.markdown[rep.markdown.index("## Sweep `my_sweep`") :]
    assert "Notes " not in section.split("\n\n")[1]  # no course text for a user's sweep
    assert "Axes: init ∈ {default, xavier}; lr ∈ {0.01, 0.3}" in section
    assert "| init | lr | n | diverged |" in section
    assert "Claims judged on this sweep" not in section


def test_diverged_runs_are_counted_and_break_nothing(synthetic):
    _, rep = synthetic
    s = rep.summary.set_index("config")
    all_gone = s.loc["init=xavier, lr=0.3"]
    assert all_gone["n_diverged"] == len(SEEDS) and math.isnan(all_gone["final_test_mse_geomean"])
    one_gone = s.loc["init=default, lr=0.3"]
    assert one_gone["n_diverged"] == 1
    assert one_gone["final_test_mse_geomean"] == pytest.approx(1.0, rel=0.5)
    assert f"| xavier | 0.3 | {len(SEEDS)} | **{len(SEEDS)}** |" in rep.markdown
    assert rep.metrics["sweeps"]["my_sweep"]["diverged"] == len(SEEDS) + 1
    json.dumps(rep.metrics, allow_nan=False)  # JSON-able: no NaN anywhere
    assert "nan" not in build.csv_bytes(rep.summary).decode().lower()


def test_planted_effects_give_the_expected_verdicts(synthetic):
    _, rep = synthetic
    v = rep.claims.set_index("id")["verdict"]
    assert v["bn_lowers"] == "supported"  # BN halves the error
    assert v["bn_deeper"] == "supported"  # ... and more with depth
    assert v["bn_evens"] == "supported"  # one decade per layer without BN, 0.1 with
    assert "elsewhere" not in v  # its sweep was not run: listed, not judged
    assert "Not judged (their sweeps were not run): elsewhere." in rep.markdown
    assert rep.metrics["claims"]["bn_lowers"]["verdict"] == "supported"
    assert list(rep.claims.columns[:11]) == [
        "id",
        "kind",
        "sweep",
        "metric",
        "scale",
        "expect",
        "margin",
        "estimate",
        "ci_low",
        "ci_high",
        "p",  # the exact p, under the name scripts read before p_exact came
    ]
    assert (rep.claims["p"] == rep.claims["p_exact"]).all()
    assert {"p_holm", "level", "needed", "n", "k_agree", "mde", "primary", "verdict"} <= set(
        rep.claims.columns
    )


def test_claims_come_first_with_their_words_and_per_sweep_lists(synthetic):
    _, rep = synthetic
    md = rep.markdown
    assert md.index("## Claims") < md.index("`bn_lowers`") < md.index("## Method")
    assert "BN lowers the error" in md and "bn=pre vs bn=none" in md
    section = md[md.index("## Sweep `depth`") :]
    assert "Claims judged on this sweep: `bn_lowers`, `bn_deeper`, `bn_evens`." in section


@pytest.mark.parametrize(
    ("bn_factor", "expected"),
    [(0.5, "supported"), (1.0, "inconclusive"), (2.0, "not supported")],
)
def test_bn_claim_follows_the_sign_of_the_effect(bn_factor, expected):
    v = verdicts(depth_sweep(bn_factor=bn_factor, per_layer=1.0))
    assert v["bn_lowers"] == expected
    assert v["bn_deeper"] != "supported"  # no trend planted


def test_tanh_claim_compares_the_bn_effects_of_two_activations():
    spec = {
        "tanh": {
            **BN_ALL,
            "says": "tanh more",
            "kind": "interaction",
            "group": {"activation": "tanh"},
            "than": {"activation": "sigmoid"},
            "expect": "lower",
        }
    }
    v = verdicts(depth_sweep(activations=("sigmoid", "tanh")), spec)
    assert v["tanh"] != "supported"  # the same BN effect for both


def test_no_sweeps_judges_no_claim():
    rep = build_report({}, claims_for(depth_sweep()))
    assert rep.claims.empty and "verdict" in rep.claims.columns
    assert rep.summary.empty and rep.figures == {}
    assert "## Claims" in rep.markdown and "Not judged" in rep.markdown


def test_missing_columns_are_reported_by_name():
    sweep = depth_sweep()
    bad = SweepData(sweep.runs.drop(columns=["best_test_mse"]), sweep.history)
    with pytest.raises(ValueError, match="best_test_mse"):
        build_report({"depth": bad})


def test_axes_are_inferred_when_not_given():
    sweep = depth_sweep()
    rep = build_report({"depth": SweepData(sweep.runs, sweep.history, sweep.diagnostics)})
    assert "Axes: bn ∈ {none, pre}; depth ∈ {1, 2}" in rep.markdown


# --- the real sample outputs of the default sweeps ---------------------------------------
