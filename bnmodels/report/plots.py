"""The report's figures, drawn on `matplotlib.figure.Figure` objects (no pyplot state).

Functions take numbers already reduced over seeds and return a Figure; `png_bytes`
renders one to the same bytes every time for the same input (no timestamp, no
software version in the PNG).
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator

DPI = 100
PANEL_SIZE = (3.4, 2.5)  # inches per panel: small files, still readable at 100 dpi
# matplotlib's tab10, fixed here so colors do not depend on rcParams
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
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
    runs: np.ndarray | None = None  # (runs, x): every seed's own line, drawn faint


@dataclass(frozen=True)
class Panel:
    title: str
    series: Sequence[Series]
    notes: Sequence[str] = field(default_factory=tuple)  # lines under the title
    vspan: tuple[float, float] | None = None  # a shaded x range (e.g. batch 15-30)
    hline: float | None = None  # a reference level (e.g. ratio 1)
    ylabel: str | None = None  # overrides the figure's y label for this panel
    hline_label: str | None = None  # the reference level's legend entry


def suptitle(fig: Figure, title: str) -> None:
    """The figure's title, wrapped to the figure's width (a long one was clipped at both
    ends: `constrained` layout centres it and cuts what overflows)."""
    chars = int(fig.get_figwidth() * 72 / (0.6 * (FONT + 2)))  # points; ~0.6 em a character
    fig.suptitle(textwrap.fill(title, max(30, chars)), fontsize=FONT + 2)


def new_figure(nrows: int, ncols: int, panel_size=PANEL_SIZE, sharex=False, sharey=False):
    """A Figure with an Agg canvas and a (nrows, ncols) array of axes."""
    fig = Figure(
        figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.6), dpi=DPI, layout="constrained"
    )
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
            yerr = np.vstack(
                [np.where(np.isfinite(lo), y[ok] - lo, 0), np.where(np.isfinite(hi), hi - y[ok], 0)]
            )
        ax.errorbar(
            x[ok],
            y[ok],
            yerr=yerr,
            color=s.color,
            label=s.label,
            marker="o",
            markersize=3.5,
            capsize=2.5,
            linewidth=1.2,
            linestyle=s.linestyle,
        )
    else:
        if s.runs is not None:  # each seed faint, so a collapse a median hides still shows
            for row in np.atleast_2d(np.asarray(s.runs, dtype=float)):
                fine = np.isfinite(x) & np.isfinite(row)
                ax.plot(x[fine], row[fine], color=s.color, linewidth=0.4, alpha=0.25)
        ax.plot(
            x[ok],
            y[ok],
            color=s.color,
            label=s.label,
            linewidth=1.3,
            linestyle=s.linestyle,
            marker="o" if ok.sum() == 1 else None,
        )
        if s.low is not None and s.high is not None:
            lo = np.asarray(s.low, dtype=float)
            hi = np.asarray(s.high, dtype=float)
            band = np.isfinite(x) & np.isfinite(lo) & np.isfinite(hi)
            if band.any():
                ax.fill_between(x[band], lo[band], hi[band], color=s.color, alpha=0.2, linewidth=0)
    return True


def _g(v, _pos=None) -> str:
    return f"{v:g}"


def _g_25(v, _pos=None) -> str:
    """Label only the minor ticks at 2 and 5 times a power of ten."""
    if v <= 0:
        return ""
    mantissa = round(v / 10 ** math.floor(math.log10(v) + 1e-9))
    return f"{v:g}" if mantissa in (2, 5) else ""


def _log_axis_labels(ax) -> None:
    """Plain numbers on a log axis, with labelled minor ticks when it spans few decades."""
    ax.yaxis.set_major_formatter(FuncFormatter(_g))
    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo < 10:
        ax.yaxis.set_minor_formatter(FuncFormatter(_g))
    elif lo > 0 and hi / lo < 150:
        ax.yaxis.set_minor_formatter(FuncFormatter(_g_25))
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


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
    panel_size: tuple[float, float] = PANEL_SIZE,
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    ycap: float | None = None,
) -> Figure:
    """Panels in a grid of `ncols` columns, one shared legend below them.

    A log y-axis is used only in panels that have positive values to show; a panel
    with nothing finite says so instead of failing. `ycap` clips the y axis above (a
    diverging curve would otherwise flatten every other one), saying so in the panel.
    """
    n = max(len(panels), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = new_figure(nrows, ncols, panel_size=panel_size, sharey=sharey)
    handles: dict[str, object] = {}
    for i, ax in enumerate(axes.flat):
        if i >= len(panels):
            ax.set_visible(False)
            continue
        p = panels[i]
        drawn = _draw_panel(ax, p, logy=logy)
        _scale_axes(ax, drawn, logx=logx, xlim=xlim, ylim=ylim, ycap=ycap, xticks=xticks)
        title_text = p.title + "".join(f"\n{line}" for line in p.notes)
        ax.set_title(title_text, fontsize=FONT + 1 if not p.notes else FONT)
        ax.tick_params(labelsize=FONT)
        ax.grid(True, which="major", linewidth=0.4, alpha=0.5)
        if i % ncols == 0 or p.ylabel is not None:
            ax.set_ylabel(p.ylabel or ylabel, fontsize=FONT + 1)
        if i >= len(panels) - ncols:
            ax.set_xlabel(xlabel, fontsize=FONT + 1)
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    suptitle(fig, title)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="outside lower center",
            ncols=min(len(handles), 4),
            fontsize=FONT,
            frameon=False,
        )
    return fig


def _draw_panel(ax, p: Panel, *, logy: bool) -> bool:
    """A panel's series, shaded span and reference line; its y scale. False when nothing
    finite was drawn (the panel then says so)."""
    drawn = any([_draw_series(ax, s) for s in p.series])
    values = np.concatenate([np.array([])] + [_positive(s.center) for s in p.series])
    if p.vspan is not None:
        ax.axvspan(*p.vspan, color="0.88", zorder=0, linewidth=0)
    if p.hline is not None and math.isfinite(p.hline):
        ax.axhline(p.hline, color="0.3", linewidth=0.8, linestyle=":", label=p.hline_label)
    if not drawn:
        ax.text(
            0.5,
            0.5,
            "no finite values\n(all runs diverged)",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=FONT,
            color="0.3",
        )
    elif logy and values.size:
        ax.set_yscale("log")
        _log_axis_labels(ax)
    return drawn


def _scale_axes(ax, drawn: bool, *, logx, xlim, ylim, ycap, xticks) -> None:
    """The x scale and limits, the y limits and the clipping note, the x ticks."""
    if logx:
        ax.set_xscale("log")
    if xlim is not None:
        ax.set_xlim(*xlim)
    if ylim is not None and drawn:
        ax.set_ylim(*ylim)
    if ycap is not None and drawn and ax.get_ylim()[1] > ycap:
        ax.set_ylim(top=ycap)
        ax.text(
            0.98,
            0.97,
            f"clipped above {ycap:.3g}",
            ha="right",
            va="top",
            transform=ax.transAxes,
            fontsize=FONT - 1,
            color="0.3",
        )
    if xticks is not None:
        ax.set_xticks(list(xticks), [f"{t:g}" for t in xticks])
        ax.xaxis.set_minor_locator(NullLocator())
        if len(xticks) > 5:
            ax.tick_params(axis="x", labelrotation=45)


def _wrap(title: str, width: int = 34) -> str:
    """A panel title broken at ', ' into lines of about `width` characters (long titles
    of neighbouring panels overlap otherwise)."""
    lines, line = [], ""
    for part in title.split(", "):
        if line and len(line) + len(part) + 2 > width:
            lines.append(line + ",")
            line = part
        else:
            line = f"{line}, {part}" if line else part
    return "\n".join([*lines, line])


def _symlog_if_wide(ax, layers: Sequence[np.ndarray]) -> None:
    """A symmetric log y axis when the values span more than two decades around their
    typical size (one outlier would flatten every violin on a linear axis); linear below
    the median absolute value."""
    v = np.concatenate([np.abs(np.asarray(x, dtype=float)) for x in layers] or [np.array([])])
    v = v[np.isfinite(v) & (v > 0)]
    if v.size and v.max() > 100 * np.median(v):
        ax.set_yscale("symlog", linthresh=float(np.median(v)))


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
                parts = ax.violinplot(
                    [v], positions=[j + 1], widths=0.8, showmedians=True, showextrema=True
                )
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
        _symlog_if_wide(ax, layers)
        ax.set_title(_wrap(ptitle), fontsize=FONT)
        ax.tick_params(labelsize=FONT)
        ax.grid(True, axis="y", linewidth=0.4, alpha=0.5)
        if i % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=FONT + 1)
        ax.set_xlabel("Linear layer", fontsize=FONT + 1)
    suptitle(fig, title)
    return fig
