"""What the figures draw, against numpy: probe curves as geometric means with quartile
bands, gradient violins on ||grad W|| / ||W||, the baseline each curve is read against."""

from __future__ import annotations

import numpy as np
import pytest
from test_claims import SEEDS, make_sweep

from bnmodels.report import figures
from bnmodels.study.prepared import SweepData, prepare


@pytest.fixture(scope="module")
def sweep():
    data = make_sweep({"bn": ["none", "pre"]}, lambda c: 1.0)
    rng = np.random.default_rng(0)
    h = data.history
    h["probe_loss_range"] = np.exp(rng.normal(0, 2.0, len(h)))  # spans decades
    h["grad_ratio_l1"] = np.exp(rng.normal(-3, 1.0, len(h)))
    h["grad_ratio_l2"] = np.exp(rng.normal(-5, 1.0, len(h)))
    h["test_accuracy"] = rng.uniform(0.3, 0.9, len(h))
    runs = data.runs.assign(baseline_test_accuracy=0.4, baseline_test_mse=3.0)
    return prepare("s", SweepData(runs, h, {}, data.axes))


def _panels(fig):
    return fig.args[0]


def test_probe_curves_are_geometric_means_with_quartile_bands(sweep):
    (fig,) = figures._curves_figures(
        sweep, "probe_loss_range", "loss range", "probe", center="geomean"
    ).values()
    for series in _panels(fig)[0].series:
        bn = series.label.split("=")[1]
        keys = sweep.runs.loc[sweep.runs["bn"] == bn, "run_key"]
        m = sweep.curves["probe_loss_range"].loc[keys].to_numpy()
        assert series.center == pytest.approx(np.exp(np.log(m).mean(axis=0)), rel=1e-12)
        assert series.low == pytest.approx(np.quantile(m, 0.25, axis=0), rel=1e-12)
        assert series.high == pytest.approx(np.quantile(m, 0.75, axis=0), rel=1e-12)
        assert (series.low > 0).all()  # a log axis keeps its band


def test_gradient_violins_show_the_scale_invariant_ratio_over_seeds(sweep):
    (fig,) = figures._violin_figure(sweep).values()
    h = sweep.history
    for title, layers in fig.args[0]:
        bn = title.split("=")[1].split(" ")[0]
        keys = set(sweep.runs.loc[sweep.runs["bn"] == bn, "run_key"])
        for i, values in enumerate(layers, start=1):
            per_run = (
                h[h["run_key"].isin(keys)]
                .groupby("run_key")[f"grad_ratio_l{i}"]
                .apply(lambda v: np.log10(v).mean())
            )
            assert sorted(values) == pytest.approx(sorted(per_run), rel=1e-12)
            assert len(values) == len(SEEDS)
    assert fig.keywords["ylabel"] == "log10 ||grad W|| / ||W||"


def test_each_curve_is_read_against_its_own_baseline(sweep):
    for metric, words in (("test_accuracy", "majority class"), ("test_mse", "constant predictor")):
        (fig,) = figures._curves_figures(sweep, metric, metric, metric).values()
        panel = _panels(fig)[0]
        base = 0.4 if metric == "test_accuracy" else 3.0
        assert panel.hline == base and panel.hline_label.startswith(words)
