"""Error figures show the constant predictor and keep one scale per grid (issue 11)."""

from __future__ import annotations

import numpy as np
from test_claims import make_sweep

from bnmodels.report import figures, plots
from bnmodels.study.prepared import prepare


def _sweep():
    data = make_sweep({"bn": ["none", "pre"], "depth": [1, 2]}, lambda c: 2.0)
    data.runs["baseline_test_mse"] = np.where(data.runs["depth"] == 1, 8.0, 9.0)
    return prepare("s", data)


def test_curve_panels_carry_their_constant_predictor_and_share_a_clipped_scale():
    sw = _sweep()
    (draw,) = figures._curves_figures(sw, "test_mse", "test MSE", "test_curves").values()
    panels = draw.args[0]
    assert [p.hline for p in panels] == [8.0, 9.0]  # per panel: its runs' baseline
    assert all(p.hline_label == figures.BASELINE_LABEL for p in panels)
    assert draw.keywords["sharey"] and draw.keywords["ycap"] == figures.CAP_TIMES * 9.0
    fig = draw()
    labels = fig.legends[0].get_texts()
    assert figures.BASELINE_LABEL in [t.get_text() for t in labels]
    ax = fig.axes[0]
    assert 8.0 in [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"]


def test_a_diverging_curve_is_clipped_with_a_note():
    panel = plots.Panel("p", [plots.Series("s", np.arange(3.0), np.array([1.0, 1e6, 1e12]))])
    fig = plots.grid_figure([panel], ncols=1, xlabel="x", ylabel="y", title="t", ycap=100.0)
    ax = fig.axes[0]
    assert ax.get_ylim()[1] == 100.0
    assert any("clipped above 100" in t.get_text() for t in ax.texts)
