"""The report's figures, drawn on `matplotlib.figure.Figure` objects (no pyplot state).

Functions take numbers already reduced over seeds and return a Figure; `png_bytes`
renders one to the same bytes every time for the same input (no timestamp, no
software version in the PNG).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

DPI = 100
PANEL_SIZE = (3.4, 2.5)  # inches per panel: small files, still readable at 100 dpi
# matplotlib's tab10, fixed here so colors do not depend on rcParams
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip
FONT = 8


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


@dataclass(frozen=True)
class Series:
    """One line: `center` against `x`, with an optional spread from `low` to `high`.

    style "band" shades the spread (curves over epochs); "errorbar" draws it as bars
    (one point per configuration, e.g. error against learning rate).
    """

    label: str
    x: np.ndarray
    center: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    color: str = PALETTE[0]
    style: str = "band"
    linestyle: str = "-"


@dataclass(frozen=True)
class Panel:
    title: str
    series: Sequence[Series]
    notes: Sequence[str] = field(default_factory=tuple)  # text lines in the corner
    vspan: tuple[float, float] | None = None  # a shaded x range (e.g. batch 15-30)
    hline: float | None = None  # a reference level (e.g. ratio 1)


def new_figure(nrows: int, ncols: int, panel_size=PANEL_SIZE, sharex=False, sharey=False):
    """A Figure with an Agg canvas and a (nrows, ncols) array of axes."""
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.6), dpi=DPI,
                 layout="constrained")  # fmt: skip
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey)
    return fig, axes


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes, identical for identical figures."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _positive(a) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    return a[np.isfinite(a) & (a > 0)]


def _draw_series(ax, s: Series) -> bool:
    """Draw one series; False when it has nothing finite to show."""
    x = np.asarray(s.x, dtype=float)
    y = np.asarray(s.center, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return False
    if s.style == "errorbar":
        yerr = None
        if s.low is not None and s.high is not None:
            lo = np.asarray(s.low, dtype=float)[ok]
            hi = np.asarray(s.high, dtype=float)[ok]
            yerr = np.vstack([np.where(np.isfinite(lo), y[ok] - lo, 0),
                              np.where(np.isfinite(hi), hi - y[ok], 0)])  # fmt: skip
        ax.errorbar(x[ok], y[ok], yerr=yerr, color=s.color, label=s.label, marker="o",
                    markersize=3.5, capsize=2.5, linewidth=1.2, linestyle=s.linestyle)  # fmt: skip
    else:
        ax.plot(x[ok], y[ok], color=s.color, label=s.label, linewidth=1.3,
                linestyle=s.linestyle, marker="o" if ok.sum() == 1 else None)  # fmt: skip
        if s.low is not None and s.high is not None:
            lo = np.asarray(s.low, dtype=float)
            hi = np.asarray(s.high, dtype=float)
            band = np.isfinite(x) & np.isfinite(lo) & np.isfinite(hi)
            if band.any():
                ax.fill_between(x[band], lo[band], hi[band], color=s.color, alpha=0.2,
                                linewidth=0)  # fmt: skip
    return True


def grid_figure(
    panels: Sequence[Panel],
    *,
    ncols: int,
    xlabel: str,
    ylabel: str,
    title: str,
    logx: bool = False,
    logy: bool = True,
    sharey: bool = False,
    xticks: Sequence[float] | None = None,
) -> Figure:
    """Panels in a grid of `ncols` columns, one shared legend below them.

    A log y-axis is used only in panels that have positive values to show; a panel
    with nothing finite says so instead of failing.
    """
    n = max(len(panels), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = new_figure(nrows, ncols, sharey=sharey)
    handles: dict[str, object] = {}
    for i, ax in enumerate(axes.flat):
        if i >= len(panels):
            ax.set_visible(False)
            continue
        p = panels[i]
        drawn = [_draw_series(ax, s) for s in p.series]
        values = np.concatenate(
            [_positive(s.center) for s in p.series]
            + [_positive(s.low) for s in p.series if s.low is not None]
        ) if p.series else np.array([])  # fmt: skip
        if p.vspan is not None:
            ax.axvspan(*p.vspan, color="0.85", zorder=0, linewidth=0)
        if p.hline is not None:
            ax.axhline(p.hline, color="0.4", linewidth=0.8, linestyle=":")
        if not any(drawn):
            ax.text(0.5, 0.5, "no finite values\n(all runs diverged)", ha="center",
                    va="center", transform=ax.transAxes, fontsize=FONT, color="0.3")  # fmt: skip
        elif logy and values.size:
            ax.set_yscale("log")
        if logx:
            ax.set_xscale("log")
        if xticks is not None:
            ax.set_xticks(list(xticks), [f"{t:g}" for t in xticks])
            ax.xaxis.set_minor_locator(NullLocator())
        if p.notes:
            ax.text(0.02, 0.02, "\n".join(p.notes), ha="left", va="bottom",
                    transform=ax.transAxes, fontsize=FONT - 1, color="0.25")  # fmt: skip
        ax.set_title(p.title, fontsize=FONT + 1)
        ax.tick_params(labelsize=FONT)
        ax.grid(True, which="major", linewidth=0.4, alpha=0.5)
        if i % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=FONT + 1)
        if i >= len(panels) - ncols:
            ax.set_xlabel(xlabel, fontsize=FONT + 1)
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.suptitle(title, fontsize=FONT + 2)
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
                   ncols=min(len(handles), 4), fontsize=FONT, frameon=False)  # fmt: skip
    return fig


def violin_figure(
    panels: Sequence[tuple[str, Sequence[np.ndarray]]],
    layer_labels: Sequence[str],
    *,
    ylabel: str,
    title: str,
    ncols: int = 3,
) -> Figure:
    """The course's `weights_vp`: one violin per layer, one panel per model.

    Each panel is (title, one array of values per layer); NaN values are dropped, and an
    empty or constant layer is drawn as a single tick instead of a violin.
    """
    n = max(len(panels), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = new_figure(nrows, ncols, sharey=True)
    for i, ax in enumerate(axes.flat):
        if i >= len(panels):
            ax.set_visible(False)
            continue
        ptitle, layers = panels[i]
        for j, values in enumerate(layers):
            v = np.asarray(values, dtype=float)
            v = v[np.isfinite(v)]
            if v.size >= 2 and np.ptp(v) > 0:
                parts = ax.violinplot([v], positions=[j + 1], widths=0.8, showmedians=True,
                                      showextrema=True)  # fmt: skip
                for body in parts["bodies"]:
                    body.set_facecolor(color(j))
                    body.set_alpha(0.5)
                for key in ("cmedians", "cmins", "cmaxes", "cbars"):
                    parts[key].set_color(color(j))
                    parts[key].set_linewidth(0.8)
            elif v.size:
                ax.plot([j + 1], [v[0]], marker="_", markersize=12, color=color(j))
            else:
                ax.text(j + 1, 0, "n/a", ha="center", fontsize=FONT - 1, color="0.4")
        ax.set_xticks(range(1, len(layer_labels) + 1), list(layer_labels))
        ax.set_xlim(0.4, len(layer_labels) + 0.6)
        ax.set_title(ptitle, fontsize=FONT + 1)
        ax.tick_params(labelsize=FONT)
        ax.grid(True, axis="y", linewidth=0.4, alpha=0.5)
        if i % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=FONT + 1)
        ax.set_xlabel("Linear layer", fontsize=FONT + 1)
    fig.suptitle(title, fontsize=FONT + 2)
    return fig
