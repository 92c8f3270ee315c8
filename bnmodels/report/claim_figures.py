"""The claims as pictures: a forest plot of every claim (effect and 95% interval, primary
and exploratory apart), and each primary claim's per-seed paired effects.

Claims are on different scales (a ratio of errors, percentage points, decades, a net share
of seeds), so the forest has one panel per scale, each with its line of no effect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from bnmodels.report import plots
from bnmodels.study.evaluate import ClaimResult

NAMES = {  # panel title per scale (and unit, for linear metrics)
    "log": "ratio of geometric means (log axis; 1 = no effect)",
    "order": "net share of seeds (censored times: +1 all later, -1 all sooner)",
}
PRIMARY_COLOR, EXPLORATORY_COLOR = "#1f77b4", "#7f7f7f"


def _group(r: ClaimResult) -> str:
    m = r.claim.metric
    return m.scale if m.scale in NAMES else f"difference in {m.unit or 'units'}"


def _shown(r: ClaimResult, x):
    """Values on the panel's axis: a log ratio as the ratio, linear ones in shown units."""
    x = np.asarray(x, dtype=float)
    m = r.claim.metric
    if m.scale == "log":
        return np.exp(x)
    return x if m.scale == "order" else x * m.shown_scale


def forest_figure(results: Sequence[ClaimResult]) -> Figure:
    """Every claim's effect with its 95% interval; filled: primary, open: exploratory."""
    groups: dict[str, list[ClaimResult]] = {}
    for r in sorted(results, key=lambda r: not r.claim.primary):
        groups.setdefault(_group(r), []).append(r)
    heights = [max(1.0, 0.28 * len(g) + 0.6) for g in groups.values()]
    fig = Figure(figsize=(8.0, sum(heights) + 0.8), dpi=plots.DPI, layout="constrained")
    plots.FigureCanvasAgg(fig)
    axes = fig.subplots(len(groups), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (name, rs) in zip(axes, groups.items(), strict=True):
        log = rs[0].claim.metric.scale == "log"
        y = np.arange(len(rs))[::-1]
        for yi, r in zip(y, rs, strict=True):
            est, lo, hi = _shown(r, [r.estimate, r.ci_low, r.ci_high])
            color = PRIMARY_COLOR if r.claim.primary else EXPLORATORY_COLOR
            if np.isfinite([lo, hi]).all():
                ax.plot([lo, hi], [yi, yi], color=color, linewidth=1.5)
            if math.isfinite(est):
                face = color if r.claim.primary else "white"
                ax.plot([est], [yi], "o", color=color, markerfacecolor=face, markersize=5)
            if r.claim.expect == "same" and r.claim.margin:
                m, unit = r.claim.margin, r.claim.metric.shown_scale
                band = (1 / (1 + m), 1 + m) if log else (-m * unit, m * unit)
                ax.fill_betweenx([yi - 0.4, yi + 0.4], *band, color="#2ca02c", alpha=0.15)
        ax.axvline(1.0 if log else 0.0, color="black", linewidth=0.8, linestyle=":")
        if log:
            ax.set_xscale("log")
        ax.set_yticks(y, [f"{r.claim.id}{'' if r.claim.primary else ' (expl.)'}" for r in rs])
        ax.set_ylim(-0.7, len(rs) - 0.3)
        ax.set_title(NAMES.get(name, name), fontsize=plots.FONT + 1)
        ax.tick_params(labelsize=plots.FONT)
    plots.suptitle(
        fig,
        "Every claim: effect and 95% interval (filled: primary; open: exploratory; "
        "green: a same-claim's margin)",
    )
    return fig


def per_seed_figure(results: Sequence[ClaimResult]) -> Figure:
    """One panel per primary claim: each seed's paired effect (a point), their mean, and
    the line of no effect."""
    rs = [r for r in results if r.claim.primary and len(r.per_seed)]
    ncols = 4
    nrows = max(1, math.ceil(len(rs) / ncols))
    fig, axes = plots.new_figure(nrows, ncols, panel_size=(2.6, 1.9))
    for ax, r in zip(axes.ravel(), rs, strict=False):
        raw = np.asarray(r.per_seed, dtype=float)
        raw = raw[np.isfinite(raw)]
        v = _shown(r, raw)
        x = np.linspace(-0.25, 0.25, len(v)) if len(v) > 1 else np.zeros(len(v))
        ax.plot(x, v, "o", color=PRIMARY_COLOR, markersize=4, alpha=0.8)
        if len(v):  # the mean on the claim's scale (a log ratio's: the geometric mean)
            ax.plot([-0.35, 0.35], [_shown(r, raw.mean())] * 2, color="black", linewidth=1.2)
        log = r.claim.metric.scale == "log"
        ax.axhline(1.0 if log else 0.0, color="black", linewidth=0.8, linestyle=":")
        if log and len(v) and (v > 0).all():
            ax.set_yscale("log")
            plots._log_axis_labels(ax)
        ax.set_xlim(-0.6, 0.6)
        ax.set_xticks([])
        ax.set_title(plots._wrap(r.claim.id, 30), fontsize=plots.FONT)
        ax.tick_params(labelsize=plots.FONT - 1)
    for ax in axes.ravel()[len(rs) :]:
        ax.set_visible(False)
    plots.suptitle(fig, "Primary claims: one point per seed (its paired effect), line: mean")
    return fig


def claim_figures(results: Sequence[ClaimResult]) -> dict:
    """File name -> figure maker of the claims' figures."""
    return {
        "claims_forest.png": lambda: forest_figure(results),
        "claims_per_seed.png": lambda: per_seed_figure(results),
    }
