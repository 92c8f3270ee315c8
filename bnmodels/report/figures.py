"""The report's figures: curves per configuration, final error against a numeric axis,
per-layer gradient scale and gradient violins (the notes' figures, over seeds).

Each maker returns {file name: a function that draws the figure}, so that names are known
without drawing and the aggregate stage can draw them on several cores.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from bnmodels.report import plots
from bnmodels.study import stats
from bnmodels.study.prepared import (
    CLASSIFICATION,
    REGRESSION,
    PreparedSweep,
    label,
    log_final,
    only,
    seed_diffs,
    select,
    show,
)

HUE_ORDER = ("norm", "bn", "normalization", "activation", "init", "dataset")  # line colors
FINAL_AXES = {
    "depth": "hidden layers",
    "lr": "learning rate",
    "batch_size": "batch size",
    "width": "units per hidden layer",
}
ACCURACY_LIM = (0.0, 1.0)
MAX_PANELS = 24  # per figure; more configurations are listed in the table only
SMALL_BATCH, LARGE_BATCH = 15, 30  # the notes: BN needs batches of 15-30 or more (shaded)
BASELINE_LABEL = "constant predictor (train mean)"
# what a model that ignores its inputs scores, per metric (runs.csv's baseline_* columns)
BASELINE_LABELS = {
    "test_accuracy": "majority class (of the train rows)",
    "train_accuracy": "majority class (of the train rows)",
    "test_ce": "train class frequencies",
    "train_ce": "train class frequencies",
}
CAP_TIMES = 10  # error axes are clipped at 10 times the constant predictor's error


def _paired(sw: PreparedSweep, value, where: Mapping, a: Mapping, b: Mapping) -> stats.Effect:
    d, _ = seed_diffs(sw, value, where, a, b)
    return stats.paired_effect(np.zeros(len(d)), d.to_numpy())


def _hue(sw: PreparedSweep) -> str | None:
    for k in HUE_ORDER:
        if k in sw.axes:
            return k
    return next(iter(sw.axes), None)


def _combos(sw: PreparedSweep, keys: Sequence[str]) -> list[dict]:
    """Combinations of `keys` values present in the runs, in axis order."""
    out = []
    for values in itertools.product(*(sw.axes[k] for k in keys)):
        c = dict(zip(keys, values, strict=True))
        if sw.select(**c).any():
            out.append(c)
    return out


def _layout(sw: PreparedSweep, keys: Sequence[str]) -> int:
    """Columns for a grid of panels over `keys`: the course's 2x2 for four depths."""
    n = len(_combos(sw, keys))
    if len(keys) == 2 and len(sw.axes[keys[1]]) <= 5:
        return len(sw.axes[keys[1]])
    if n == 4:
        return 2
    return min(4, n)


def _figure_groups(sw: PreparedSweep, hue: str | None) -> tuple[list[dict], list[str]]:
    """Which runs go in one figure and which keys make its panels.

    Four or more depths make a grid of their own (the notes' 2x2 figure of depths 1-4),
    one figure per combination of the remaining axes; otherwise one figure per sweep.
    """
    rest = [k for k in sw.axes if k != hue]
    if "depth" in rest and len(sw.axes["depth"]) >= 4 and len(rest) > 1:
        split = [k for k in rest if k != "depth"]
        combos = _combos(sw, split)
        if len(combos) <= 4:
            return combos, ["depth"]
    return [{}], rest


def _file_suffix(group: Mapping[str, Any]) -> str:
    s = "_".join(f"{k}-{show(v)}" for k, v in group.items())
    return "_" + re.sub(r"[^A-Za-z0-9_.-]", "-", s) if s else ""


def _curve_stats(m: np.ndarray, center: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of (runs, epochs): median and IQR; geometric mean and IQR (the scale the
    claims compare probes on: a mean +- t band on a log axis plunges to its floor); or mean
    and 95% t-interval."""
    if center == "median":
        return tuple(stats.column_quantiles(m, [0.5, 0.25, 0.75]))
    if center == "geomean":
        with np.errstate(invalid="ignore", divide="ignore"):
            logs = np.log(np.where(m > 0, m, np.nan))
        c = np.exp(
            [stats.finite(col).mean() if stats.finite(col).size else np.nan for col in logs.T]
        )
        _, lo, hi = stats.column_quantiles(m, [0.5, 0.25, 0.75])
        return c, lo, hi
    return tuple(stats.column_t_intervals(m))


def _baseline(sw: PreparedSweep, metric: str, where: Mapping) -> float:
    """The constant predictor's value of `metric` for the runs `where` selects (runs.csv's
    `baseline_<metric>`; one per data set), NaN when unknown."""
    col = f"baseline_{metric}"
    if col not in sw.runs:
        return math.nan
    v = stats.finite(sw.runs.loc[sw.select(**where), col])
    return float(np.median(v)) if v.size else math.nan


def _cap(sw: PreparedSweep, metric: str) -> float | None:
    """Where an error axis is clipped: CAP_TIMES the largest constant predictor's error."""
    col = f"baseline_{metric}"
    if not metric.endswith(("_mse", "_ce")) or col not in sw.runs:
        return None
    v = stats.finite(sw.runs[col])
    return float(CAP_TIMES * v.max()) if v.size else None


def _curves_figures(
    sw: PreparedSweep, metric: str, ylabel: str, kind: str, *, center="median", logy=True, ylim=None
) -> dict[str, Callable[[], Figure]]:
    if metric not in sw.curves:
        return {}
    hue = _hue(sw)
    hue_values = sw.axes.get(hue, [None]) if hue else [None]
    groups, panel_keys = _figure_groups(sw, hue)
    mat = sw.curves[metric]
    epochs = mat.columns.to_numpy(dtype=float)
    out = {}
    for group in groups:
        panels = []
        for pc in _combos(sw, panel_keys)[:MAX_PANELS] if panel_keys else [{}]:
            series, notes = [], []
            for j, hv in enumerate(hue_values):
                where = {**group, **pc, **({hue: hv} if hue else {})}
                r = sw.runs[sw.select(**where)]
                if r.empty:
                    continue
                m = mat.loc[r["run_key"]].to_numpy()
                if not np.isfinite(m).any():
                    continue
                c, lo, hi = _curve_stats(m, center)
                if not logy:  # fractions: the band stays within [0, 1]
                    lo, hi = np.clip(lo, 0, 1), np.clip(hi, 0, 1)
                series.append(
                    plots.Series(
                        label({hue: hv}) if hue else sw.name,
                        epochs,
                        c,
                        lo,
                        hi,
                        plots.color(j),
                        runs=m,
                    )
                )
                nd = int(r["diverged"].sum())
                if nd:
                    notes.append(f"{label({hue: hv}) if hue else 'runs'}: {nd}/{len(r)} diverged")
            if series:
                base = _baseline(sw, metric, {**group, **pc})
                panels.append(
                    plots.Panel(
                        label(pc) or sw.name,
                        series,
                        notes,
                        hline=base,
                        hline_label=BASELINE_LABELS.get(metric, BASELINE_LABEL),
                    )
                )
        if not panels:
            continue
        spread = {
            "median": "median and IQR",
            "geomean": "geometric mean and IQR",
        }.get(center, "mean and 95% CI")
        title = (
            f"{sw.name}: {ylabel.split(' (')[0]} per epoch ({spread} over seeds; each seed faint)"
        )
        if group:
            title = f"{sw.name}, {label(group)}: {ylabel.split(' (')[0]} ({spread}; seeds faint)"
        ncols = _layout(sw, panel_keys) if panel_keys else 1
        fig = partial(
            plots.grid_figure,
            panels,
            ncols=ncols,
            xlabel="epoch",
            ylabel=ylabel,
            title=title,
            logy=logy,
            sharey=True,  # panels of one grid compare: one scale
            xlim=(0.5, len(epochs) + 0.5),
            ylim=ylim,
            ycap=_cap(sw, metric),
        )
        out[f"{sw.name}_{kind}{_file_suffix(group)}.png"] = fig
    return out


def _final_by(
    sw: PreparedSweep, x_key: str, kind: str, xlabel: str
) -> dict[str, Callable[[], Figure]]:
    """Geometric-mean final test MSE with its 95% CI against one numeric axis.

    With a BN axis that includes "none", a second row of panels shows the paired
    BN / no-BN ratio per seed against the same axis.
    """
    hue = _hue(sw)
    hue = hue if hue != x_key else None
    hue_values = sw.axes.get(hue, [None]) if hue else [None]
    rest = [k for k in sw.axes if k not in (x_key, hue)]
    xs = np.array(sw.axes[x_key], dtype=float)
    panels, ratio_panels = [], []
    for pc in _combos(sw, rest)[:MAX_PANELS] if rest else [{}]:
        panels.append(_final_panel(sw, pc, x_key, hue, hue_values, xs))
        if hue == "bn" and "none" in hue_values:
            ratio_panels.append(_ratio_panel(sw, pc, x_key, hue_values, xs))
    if ratio_panels:  # each panel next to its BN / no-BN ratio
        all_panels, ncols = [p for pair in zip(panels, ratio_panels, strict=True) for p in pair], 2
    else:
        all_panels, ncols = panels, min(4, max(len(panels), 1))
    fig = partial(
        plots.grid_figure,
        all_panels,
        ncols=ncols,
        xlabel=xlabel,
        ylabel="final test MSE (geo-mean, 95% CI)",
        title=f"{sw.name}: final test MSE against {x_key} (diverged runs left out)",
        logx=True,
        xticks=xs,
        panel_size=(4.2, 2.8),
        sharey=not ratio_panels,  # error and ratio panels have different units
        ycap=_cap(sw, "test_mse"),
    )
    return {f"{sw.name}_{kind}.png": fig}


def _final_panel(sw: PreparedSweep, pc: dict, x_key: str, hue, hue_values, xs) -> plots.Panel:
    """One panel: per hue value, the final test MSE's geometric mean and CI at each x."""
    series, notes = [], []
    for j, hv in enumerate(hue_values):
        c, lo, hi, div = [], [], [], []
        for x in sw.axes[x_key]:
            r = sw.runs[sw.select(**pc, **{x_key: x}, **({hue: hv} if hue else {}))]
            d = stats.describe(r.loc[~r["diverged"], "final_test_mse"])
            c.append(d["geomean"])
            lo.append(d["ci_low"])
            hi.append(d["ci_high"])
            if r["diverged"].any():
                div.append(f"{show(x)}: {int(r['diverged'].sum())}/{len(r)}")
        name = label({hue: hv}) if hue else "all runs"
        series.append(
            plots.Series(
                name, xs, np.array(c), np.array(lo), np.array(hi), plots.color(j), style="errorbar"
            )
        )
        if div:
            notes.append(f"{name}: diverged at {x_key} " + ", ".join(div))
    base = _baseline(sw, "test_mse", pc)
    return plots.Panel(
        label(pc) or "final test MSE", series, notes, hline=base, hline_label=BASELINE_LABEL
    )


def _ratio_panel(sw: PreparedSweep, pc: dict, x_key: str, hue_values, xs) -> plots.Panel:
    """One panel: each BN mode's final test MSE over no BN's, paired by seed, at each x."""
    log_values = log_final(sw)
    rs = []
    for j, hv in enumerate(hue_values):
        if hv == "none":
            continue
        c, lo, hi = [], [], []
        for x in sw.axes[x_key]:
            e = _paired(sw, log_values, {**pc, x_key: x}, {"bn": "none"}, {"bn": hv})
            c.append(math.exp(e.estimate) if math.isfinite(e.estimate) else math.nan)
            lo.append(math.exp(e.ci_low) if math.isfinite(e.ci_low) else math.nan)
            hi.append(math.exp(e.ci_high) if math.isfinite(e.ci_high) else math.nan)
        rs.append(
            plots.Series(
                f"bn={hv} / bn=none",
                xs,
                np.array(c),
                np.array(lo),
                np.array(hi),
                plots.color(j),
                style="errorbar",
                linestyle="--",
            )
        )
    vspan = (SMALL_BATCH, LARGE_BATCH) if x_key == "batch_size" else None
    title = "BN / no-BN ratio, paired by seed" + (f"\n{label(pc)}" if pc else "")
    if vspan:
        title += f"\nshaded: batch {SMALL_BATCH}-{LARGE_BATCH}, the notes' minimum"
    return plots.Panel(title, rs, (), vspan, 1.0, "error ratio (geo-mean, 95% CI)")


def _grad_layers_figure(sw: PreparedSweep) -> dict[str, Callable[[], Figure]]:
    """Per-layer gradient scale with its spread over seeds (the Glorot condition, 1.2)."""
    if sw.grad_scale.empty:
        return {}
    hue = _hue(sw)
    hue_values = sw.axes.get(hue, [None]) if hue else [None]
    rest = [k for k in sw.axes if k != hue]
    panels = []
    for pc in _combos(sw, rest)[:MAX_PANELS] if rest else [{}]:
        series = []
        for j, hv in enumerate(hue_values):
            r = sw.runs[sw.select(**pc, **({hue: hv} if hue else {}))]
            if r.empty:
                continue
            g = 10 ** sw.grad_scale.loc[r["run_key"]].to_numpy()  # (runs, layers)
            keep = np.isfinite(g).any(axis=0)
            if not keep.any():
                continue
            layers = sw.grad_scale.columns.to_numpy(dtype=float)[keep]
            c, lo, hi = _curve_stats(g[:, keep], "median")
            series.append(
                plots.Series(
                    label({hue: hv}) if hue else sw.name, layers, c, lo, hi, plots.color(j)
                )
            )
        if series:
            panels.append(plots.Panel(label(pc) or sw.name, series))
    if not panels:
        return {}
    n_layers = sw.grad_scale.shape[1]
    fig = partial(
        plots.grid_figure,
        panels,
        ncols=_layout(sw, rest) if rest else 1,
        xlabel="Linear layer (input to output)",
        ylabel="||grad W|| / ||W||",
        xticks=list(range(1, n_layers + 1)),
        title=f"{sw.name}: per-layer ||grad W|| / ||W|| (geo-mean over epochs; median, IQR)",
    )
    return {f"{sw.name}_grad_layers.png": fig}


def _violin_rows(sw: PreparedSweep, hue: str | None) -> tuple[list[dict], dict]:
    """Which configurations the violins show: one row per combination of the categorical
    axes when there are at most 3, else their first values; the deepest depth; the middle
    value of other numeric axes. Returns (rows, the fixed part)."""
    fixed, categorical = {}, []
    for k, values in sw.axes.items():
        if k == hue:
            continue
        if k == "depth":
            fixed[k] = max(values)
        elif all(isinstance(v, float) for v in values):
            fixed[k] = values[len(values) // 2]
        else:
            categorical.append(k)
    combos = _combos(sw, categorical) if categorical else [{}]
    if len(combos) > 3:
        fixed.update({k: sw.axes[k][0] for k in categorical})
        combos = [{}]
    return combos, fixed


def _layer_values(sw: PreparedSweep, run_keys) -> tuple[list[np.ndarray], int]:
    """Per Linear layer, each run's log10 ||grad W|| / ||W|| (geometric mean over epochs,
    the scale-invariant measure the gradient claims compare); (layers, n runs)."""
    g = sw.grad_scale.reindex(list(run_keys))
    per_layer = [stats.finite(g[c]) for c in sorted(g.columns)]
    n_runs = int(g.notna().any(axis=1).sum())
    return [v for v in per_layer if v.size] if n_runs else [], n_runs


def _violin_figure(sw: PreparedSweep) -> dict[str, Callable[[], Figure]]:
    """The notes' gradient violins (`weights_vp(model, att="grad")`), measured as the claims
    measure gradients: per layer, the spread over seeds of log10 ||grad W|| / ||W||; one
    panel per hue value (columns) and configuration (rows)."""
    if sw.grad_scale.empty:
        return {}
    hue = _hue(sw)
    hue_values = sw.axes.get(hue, [None]) if hue else [None]
    rows, fixed = _violin_rows(sw, hue)
    panels, n_layers = [], 0
    for row in rows:
        for hv in hue_values:
            where = {**fixed, **row, **({hue: hv} if hue else {})}
            layers, n_runs = _layer_values(sw, sw.runs.loc[sw.select(**where), "run_key"])
            title = ", ".join(x for x in (label({hue: hv}) if hue else "", label(row)) if x)
            panels.append((f"{title or sw.name} ({n_runs} seeds)", layers))
            n_layers = max(n_layers, len(layers))
    if not n_layers:
        return {}
    fig = partial(
        plots.violin_figure,
        panels,
        [f"L{i}" for i in range(1, n_layers + 1)],
        ylabel="log10 ||grad W|| / ||W||",
        title=f"{sw.name}: gradient size relative to the weights, per layer, over seeds"
        + (f" ({label(fixed)})" if fixed else ""),
        ncols=len(hue_values),
    )
    return {f"{sw.name}_grad_violins.png": fig}


def _final_accuracy_by(sw: PreparedSweep, x_key: str) -> dict[str, Callable[[], Figure]]:
    """Mean final test accuracy with its 95% CI against one numeric axis (classification:
    higher is better, on a linear axis; diverged runs left out)."""
    hue = _hue(sw)
    hue = hue if hue != x_key else None
    hue_values = sw.axes.get(hue, [None]) if hue else [None]
    rest = [k for k in sw.axes if k not in (x_key, hue)]
    xs = np.array(sw.axes[x_key], dtype=float)
    panels = []
    for pc in _combos(sw, rest)[:MAX_PANELS] if rest else [{}]:
        series = []
        for j, hv in enumerate(hue_values):
            points = []
            for x in sw.axes[x_key]:
                r = sw.runs[sw.select(**pc, **{x_key: x}, **({hue: hv} if hue else {}))]
                points.append(stats.t_interval(r.loc[~r["diverged"], "final_test_accuracy"])[:3])
            c, lo, hi = (np.array(v, dtype=float) for v in zip(*points, strict=True))
            name = label({hue: hv}) if hue else "all runs"
            series.append(plots.Series(name, xs, c, lo, hi, plots.color(j), style="errorbar"))
        panels.append(plots.Panel(label(pc) or "final test accuracy", series))
    fig = partial(
        plots.grid_figure,
        panels,
        ncols=min(4, max(len(panels), 1)),
        xlabel=FINAL_AXES[x_key],
        ylabel="final test accuracy (mean, 95% CI)",
        title=f"{sw.name}: final test accuracy against {x_key} (diverged runs left out)",
        logx=x_key != "depth",
        logy=False,
        xticks=xs,
        ylim=ACCURACY_LIM,
        panel_size=(4.2, 2.8),
    )
    return {f"{sw.name}_accuracy_by_{x_key}.png": fig}


def _regression_figures(sw: PreparedSweep) -> dict[str, Callable[[], Figure]]:
    figs: dict[str, Callable[[], Figure]] = {}
    figs.update(_curves_figures(sw, "test_mse", "test MSE", "test_curves"))
    figs.update(_curves_figures(sw, "train_mse", "train MSE", "train_curves"))
    if "lr" in sw.axes:
        figs.update(_final_by(sw, "lr", "lr_curve", "learning rate"))
    if "batch_size" in sw.axes:
        figs.update(_final_by(sw, "batch_size", "batch_size_curve", "batch size"))
    if "width" in sw.axes:
        figs.update(_final_by(sw, "width", "width_curve", "units per hidden layer"))
    return figs


def _classification_figures(sw: PreparedSweep) -> dict[str, Callable[[], Figure]]:
    """Accuracy curves (higher is better, linear 0-1), cross-entropy curves (log), and the
    final test accuracy against each numeric axis."""
    figs: dict[str, Callable[[], Figure]] = {}
    for split in ("test", "train"):
        figs.update(
            _curves_figures(
                sw,
                f"{split}_accuracy",
                f"{split} accuracy",
                f"{split}_accuracy_curves",
                logy=False,
                ylim=ACCURACY_LIM,
            )
        )
    for split in ("test", "train"):
        figs.update(
            _curves_figures(sw, f"{split}_ce", f"{split} cross-entropy", f"{split}_ce_curves")
        )
    for x_key in FINAL_AXES:
        if x_key in sw.axes:
            figs.update(_final_accuracy_by(sw, x_key))
    return figs


def figures(sw: PreparedSweep) -> dict[str, Callable[[], Figure]]:
    """Every figure of a sweep: each task's own (on its runs alone, in a mixed sweep),
    then dead units and gradients over all runs."""
    figs: dict[str, Callable[[], Figure]] = {}
    if REGRESSION in sw.tasks:
        figs.update(_regression_figures(only(sw, REGRESSION)))
    if CLASSIFICATION in sw.tasks:
        figs.update(_classification_figures(only(sw, CLASSIFICATION)))
    if "dead_fraction" in sw.curves and np.isfinite(sw.curves["dead_fraction"].to_numpy()).any():
        dead = _curves_figures(
            sw,
            "dead_fraction",
            "dead-unit fraction",
            "dead_fraction",
            center="mean",
            logy=False,
            ylim=(-0.02, 1.02),
        )
        figs.update(dead)
    figs.update(_grad_layers_figure(sw))
    figs.update(_violin_figure(sw))
    for probe, ylabel in PROBES.items():  # sweeps with `probes: true`
        figs.update(_curves_figures(sw, probe, ylabel, probe, center="geomean"))
    if "batch_size" in sw.axes:
        figs.update(_precise_gap_figure(sw))
    return figs


PROBES = {
    "probe_loss_range": "loss variation along the gradient",
    "probe_grad_change": "gradient change ||g' - g||",
    "probe_beta": "effective beta-smoothness",
}


def _precise_gap_figure(sw: PreparedSweep) -> dict[str, Callable[[], Figure]]:
    """The cost of running BN statistics: final test MSE with running over precise
    statistics (geometric mean and 95% CI over seeds) against batch size, per BN mode."""
    runs = sw.runs[np.isfinite(sw.runs["precise_bn_gap"].to_numpy(dtype=float))]
    if runs.empty:
        return {}
    xs = np.array(sw.axes["batch_size"], dtype=float)
    series = []
    for j, bn in enumerate(m for m in ("pre", "post") if m in set(runs["bn"])):
        gaps = [runs.loc[select(runs, {"bn": bn, "batch_size": x}), "precise_bn_gap"] for x in xs]
        d = [stats.describe(g) for g in gaps]
        c, lo, hi = (np.array([v[k] for v in d]) for k in ("geomean", "ci_low", "ci_high"))
        series.append(plots.Series(f"bn={bn}", xs, c, lo, hi, plots.color(j + 1), "errorbar"))
    title = "running / precise BN statistics: the cost of running averages"
    panel = plots.Panel(title, series, ("1 = no cost; above 1: the running averages hurt",))
    fig = partial(
        plots.grid_figure,
        [plots.Panel(panel.title, panel.series, panel.notes, hline=1.0)],
        ncols=1,
        xlabel="batch size",
        ylabel="test MSE ratio (geo-mean, 95% CI)",
        title=f"{sw.name}: precise BN against batch size",
        logx=True,
        xticks=xs,
        panel_size=(5.0, 3.2),
    )
    return {f"{sw.name}_precise_bn_gap.png": fig}
