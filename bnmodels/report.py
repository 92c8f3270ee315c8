"""The study report as data: Markdown, figures, summary tables, metrics and plot tables.

`build_report(sweeps)` takes each sweep's tables (runs.csv, history.csv, diagnostics.json
as read by the aggregate stage, and the sweep's axes) and returns a `Report`;
`Report.files()` gives every output as bytes under paths relative to `reports/`, for the
stage to write. Nothing here touches the file system, and the same input gives the same
bytes (no timestamps, fixed orders, fixed float formats).

Every sweep gets a generic section (curves per configuration grouped by its axes, a
summary table); the claims of the course notes are judged when the default sweeps are
present, and listed as "not run" otherwise.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnmodels import plots, stats
from bnmodels.config import CONFIG_KEYS

GROUP_KEYS = tuple(k for k in CONFIG_KEYS if k != "seed")  # a configuration without seed
HUE_ORDER = ("bn", "normalization", "activation", "init", "dataset")  # line colors
THRESHOLD_FRACTION = 0.5  # convergence threshold: this fraction of the first-epoch loss
MAX_PANELS = 24  # per figure; more configurations are listed in the table only
COURSE_LR = 0.03  # the learning rate of every experiment in the notes
SMALL_BATCH, LARGE_BATCH = 15, 30  # the notes: BN needs batches of 15-30 or more
EQUIVALENCE_MARGIN = math.log(1.25)  # "no difference": geometric means within 25%
NOT_RUN = "not run"


@dataclass(frozen=True)
class SweepData:
    """One sweep's outputs: runs.csv and history.csv as read, diagnostics.json as loaded.

    `axes` maps each key given as a list in params.yaml to its values (seed may be among
    them; it is never a grouping key); None infers them from the runs.
    """

    runs: pd.DataFrame
    history: pd.DataFrame
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    axes: Mapping[str, Sequence] | None = None


class Figures(Mapping[str, Figure]):
    """Figures by file name, in sorted order, each drawn on first access.

    The names (and the data behind each figure) are known without drawing, so the
    Markdown and the tables cost no rendering.
    """

    def __init__(self, makers: Mapping[str, Callable[[], Figure]]):
        self._makers = dict(sorted(makers.items()))
        self._made: dict[str, Figure] = {}

    def __getitem__(self, name: str) -> Figure:
        if name not in self._made:
            self._made[name] = self._makers[name]()
        return self._made[name]

    def __iter__(self):
        return iter(self._makers)

    def __len__(self) -> int:
        return len(self._makers)


@dataclass
class Report:
    markdown: str
    figures: Figures  # file name under figures/ -> figure
    summary: pd.DataFrame  # one row per sweep x configuration (seed excluded)
    claims: pd.DataFrame  # one row per judged claim
    metrics: dict  # JSON-able headline numbers (DVC metrics)
    plots: dict[str, pd.DataFrame]  # name -> long table (DVC plots)

    def files(self, figures: Mapping[str, bytes] | None = None) -> dict[str, bytes]:
        """Every output, keyed by its path relative to `reports/`, in sorted order.
        `figures` may hold PNG bytes already drawn (by name); the others are drawn here."""
        figures = figures or {}
        out = {
            "report.md": self.markdown.encode(),
            "summary.csv": csv_bytes(self.summary),
            "claims.csv": csv_bytes(self.claims),
            "metrics.json": (json.dumps(self.metrics, indent=2, sort_keys=True) + "\n").encode(),
        }
        out.update({f"figures/{k}": figures.get(k) or plots.png_bytes(self.figures[k])
                    for k in self.figures})  # fmt: skip
        out.update({f"plots/{k}.csv": csv_bytes(t) for k, t in self.plots.items()})
        return dict(sorted(out.items()))


def csv_bytes(df: pd.DataFrame) -> bytes:
    """CSV with 6 significant digits, NaN as empty: byte-stable across platforms."""
    return df.to_csv(index=False, float_format="%.6g", lineterminator="\n").encode()


# ---------------------------------------------------------------------------
# One sweep, prepared: configurations, per-run derived numbers, epoch matrices.


def _show(v) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):g}"
    return str(v)


def _label(cfg: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
    keys = list(cfg) if keys is None else keys
    return ", ".join(f"{k}={_show(cfg[k])}" for k in keys)


def _norm(v, numeric: bool):
    return float(v) if numeric else str(v)


@dataclass
class _Sweep:
    name: str
    runs: pd.DataFrame  # one row per run, plus cfg, epochs_to_threshold, dead_final, ...
    axes: dict[str, list]  # varying keys (seed excluded), values in given order
    configs: list[dict]  # axis values of each configuration present, product order
    fixed: dict[str, Any]  # keys that do not vary
    seeds: list
    epochs: int
    threshold: float
    curves: dict[str, pd.DataFrame]  # metric -> (runs, epochs) indexed by run_key
    grad_scale: pd.DataFrame  # (runs, Linear layers): geometric mean over epochs
    diagnostics: Mapping[str, Any]

    def select(self, **where) -> pd.Series:
        """Boolean mask of the runs whose keys equal the given values."""
        mask = pd.Series(True, index=self.runs.index)
        for k, v in where.items():
            col = self.runs[k]
            if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
                mask &= col.astype(float) == float(v)
            else:
                mask &= col.astype(str) == str(v)
        return mask

    def has(self, key: str, value) -> bool:
        """Whether some run has `key == value` (as an axis value or a fixed one)."""
        return bool(self.select(**{key: value}).any())


def _diverged_flags(col: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(col):
        return col.fillna(False).astype(bool)
    return col.astype(str).str.strip().str.lower().isin(("true", "1", "1.0"))


def _prepare(name: str, data: SweepData) -> _Sweep:
    runs = data.runs.copy().reset_index(drop=True)
    needed = [*CONFIG_KEYS, "run_key", "final_test_mse", "best_test_mse", "diverged"]
    missing = [c for c in needed if c not in runs.columns]
    if missing:
        raise ValueError(f"sweep {name!r}: runs table lacks columns {missing}")
    if runs["run_key"].duplicated().any():
        raise ValueError(f"sweep {name!r}: duplicate run_key in runs table")
    for c in ("final_train_mse", "final_test_mse", "best_test_mse"):
        if c in runs.columns:
            runs[c] = pd.to_numeric(runs[c], errors="coerce").astype(float)
    # A run without a finite final test MSE counts as diverged (or missing) everywhere.
    runs["diverged"] = _diverged_flags(runs["diverged"]) | ~np.isfinite(runs["final_test_mse"])

    # Axes: the given ones in their order, plus any key that varies in the runs anyway
    # (so different configurations are never pooled), with values not listed appended.
    given = dict(data.axes or {})
    axes: dict[str, list] = {}
    for k in [*given, *GROUP_KEYS]:
        if k == "seed" or k in axes or k not in GROUP_KEYS:
            continue
        numeric = pd.api.types.is_numeric_dtype(runs[k]) and runs[k].dtype != bool
        present = sorted({_norm(v, numeric) for v in runs[k]})
        order = [_norm(v, numeric) for v in given.get(k, [])]
        values = [v for v in dict.fromkeys(order) if v in present]
        values += [v for v in present if v not in values]
        if len(values) > 1:
            axes[k] = values
    fixed = {k: _cast(runs[k].iloc[0]) for k in GROUP_KEYS if k not in axes and len(runs)}

    sw = _Sweep(
        name,
        runs,
        axes,
        [],
        fixed,
        sorted(runs["seed"].unique().tolist()),
        0,
        math.nan,
        {},
        pd.DataFrame(),
        data.diagnostics or {},
    )
    runs["cfg"] = -1
    for values in itertools.product(*axes.values()):
        cfg = dict(zip(axes, values, strict=True))
        mask = sw.select(**cfg)
        if mask.any():
            runs.loc[mask, "cfg"] = len(sw.configs)
            sw.configs.append(cfg)

    hist = data.history
    keys = runs["run_key"]
    for metric in ("train_mse", "test_mse", "dead_fraction"):
        if metric in hist.columns:
            m = hist.pivot(index="run_key", columns="epoch", values=metric)
            m = m.reindex(index=keys, columns=sorted(m.columns)).astype(float)
            sw.curves[metric] = m
    sw.epochs = int(runs["epochs"].max()) if len(runs) else 0
    if "train_mse" in sw.curves and sw.curves["train_mse"].shape[1]:
        sw.epochs = max(sw.epochs, int(sw.curves["train_mse"].columns.max()))
        first = stats.finite(sw.curves["train_mse"].iloc[:, 0])
        sw.threshold = THRESHOLD_FRACTION * float(np.median(first)) if first.size else math.nan
        runs["epochs_to_threshold"] = stats.epochs_to_threshold(
            sw.curves["train_mse"].to_numpy(), sw.threshold
        )
    else:
        runs["epochs_to_threshold"] = math.nan
    runs["dead_final"] = math.nan
    if "dead_fraction" in sw.curves:
        runs["dead_final"] = [_last_finite(row) for row in sw.curves["dead_fraction"].to_numpy()]

    # Per-layer gradient scale: geometric mean over epochs of each epoch's last-step
    # weight-gradient std; spread = decades between the largest and smallest layer.
    layer_cols = sorted(
        (c for c in hist.columns if re.fullmatch(r"grad_std_l\d+", c)),
        key=lambda c: int(c[len("grad_std_l") :]),
    )
    scale = {}
    for c in layer_cols:
        m = hist.pivot(index="run_key", columns="epoch", values=c).reindex(index=keys)
        logs = np.log10(np.where(m.to_numpy(float) > 0, m.to_numpy(float), np.nan))
        scale[int(c[len("grad_std_l") :])] = [_nanmean(r) for r in logs]
    sw.grad_scale = pd.DataFrame(scale, index=keys.to_numpy())  # log10 units
    # Per run, over its own Linear layers (input first, output last), in decades.
    finite_rows = [stats.finite(row) for row in sw.grad_scale.to_numpy()]
    runs["grad_spread"] = [float(np.ptp(v)) if v.size >= 2 else math.nan for v in finite_rows]
    runs["grad_tilt"] = [float(v[0] - v[-1]) if v.size >= 2 else math.nan for v in finite_rows]
    return sw


def _cast(v):
    return v.item() if isinstance(v, np.generic) else v


def _last_finite(row) -> float:
    f = np.asarray(row, dtype=float)
    f = f[np.isfinite(f)]
    return float(f[-1]) if f.size else math.nan


def _nanmean(row) -> float:
    f = stats.finite(row)
    return float(f.mean()) if f.size else math.nan


# ---------------------------------------------------------------------------
# Summary table


def _summary(sw: _Sweep) -> pd.DataFrame:
    rows = []
    for i, cfg in enumerate(sw.configs):
        r = sw.runs[sw.runs["cfg"] == i]
        ok = r[~r["diverged"]]
        first = r.iloc[0]
        row: dict[str, Any] = {"sweep": sw.name, "config": _label(cfg) or sw.name}
        row.update({k: _cast(first[k]) for k in GROUP_KEYS})
        row.update({"n_seeds": len(r), "n_diverged": int(r["diverged"].sum())})
        for metric in ("final_test_mse", "best_test_mse"):
            d = stats.describe(ok[metric])
            for s in ("mean", "median", "geomean", "ci_low", "ci_high"):
                row[f"{metric}_{s}"] = d[s]
        if "final_train_mse" in ok:
            row["final_train_mse_median"] = stats.quantile(ok["final_train_mse"], 0.5)
        e = stats.censor(ok["epochs_to_threshold"], sw.epochs)
        mean, lo, hi, _ = stats.t_interval(e)
        row.update(
            {
                "threshold": sw.threshold,
                "n_reached": int(np.isfinite(ok["epochs_to_threshold"]).sum()),
                "epochs_to_threshold_mean": mean,
                "epochs_to_threshold_ci_low": lo,
                "epochs_to_threshold_ci_high": hi,
                "epochs_to_threshold_median": stats.quantile(e, 0.5),
                "dead_fraction_final_mean": _nanmean(ok["dead_final"]),
                "grad_spread_decades_mean": _nanmean(ok["grad_spread"]),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# Figures


def _hue(sw: _Sweep) -> str | None:
    for k in HUE_ORDER:
        if k in sw.axes:
            return k
    return next(iter(sw.axes), None)


def _combos(sw: _Sweep, keys: Sequence[str]) -> list[dict]:
    """Combinations of `keys` values present in the runs, in axis order."""
    out = []
    for values in itertools.product(*(sw.axes[k] for k in keys)):
        c = dict(zip(keys, values, strict=True))
        if sw.select(**c).any():
            out.append(c)
    return out


def _layout(sw: _Sweep, keys: Sequence[str]) -> int:
    """Columns for a grid of panels over `keys`: the course's 2x2 for four depths."""
    n = len(_combos(sw, keys))
    if len(keys) == 2 and len(sw.axes[keys[1]]) <= 5:
        return len(sw.axes[keys[1]])
    if n == 4:
        return 2
    return min(4, n)


def _figure_groups(sw: _Sweep, hue: str | None) -> tuple[list[dict], list[str]]:
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
    s = "_".join(f"{k}-{_show(v)}" for k, v in group.items())
    return "_" + re.sub(r"[^A-Za-z0-9_.-]", "-", s) if s else ""


def _curve_stats(m: np.ndarray, center: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of (runs, epochs): median and IQR, or mean and 95% t-interval."""
    if center == "median":
        c, lo, hi = stats.column_quantiles(m, [0.5, 0.25, 0.75])
    else:
        c, lo, hi = stats.column_t_intervals(m)
    return c, lo, hi


def _curves_figures(
    sw: _Sweep, metric: str, ylabel: str, kind: str, *, center="median", logy=True, ylim=None
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
                        _label({hue: hv}) if hue else sw.name, epochs, c, lo, hi, plots.color(j)
                    )
                )
                nd = int(r["diverged"].sum())
                if nd:
                    notes.append(f"{_label({hue: hv}) if hue else 'runs'}: {nd}/{len(r)} diverged")
            if series:
                panels.append(plots.Panel(_label(pc) or sw.name, series, notes))
        if not panels:
            continue
        spread = "median and IQR" if center == "median" else "mean and 95% CI"
        title = f"{sw.name}: {ylabel.split(' (')[0]} per epoch ({spread} over seeds)"
        if group:
            title = f"{sw.name}, {_label(group)}: {ylabel.split(' (')[0]} ({spread})"
        ncols = _layout(sw, panel_keys) if panel_keys else 1
        fig = partial(
            plots.grid_figure,
            panels,
            ncols=ncols,
            xlabel="epoch",
            ylabel=ylabel,
            title=title,
            logy=logy,
            xlim=(0.5, len(epochs) + 0.5),
            ylim=ylim,
        )
        out[f"{sw.name}_{kind}{_file_suffix(group)}.png"] = fig
    return out


def _final_by(sw: _Sweep, x_key: str, kind: str, xlabel: str) -> dict[str, Callable[[], Figure]]:
    """Geometric-mean final test MSE with its 95% CI against one numeric axis.

    With a BN axis that includes "none", a second row of panels shows the paired
    BN / no-BN ratio per seed against the same axis.
    """
    hue = _hue(sw)
    hue = hue if hue != x_key else None
    hue_values = sw.axes.get(hue, [None]) if hue else [None]
    rest = [k for k in sw.axes if k not in (x_key, hue)]
    xs = np.array(sw.axes[x_key], dtype=float)
    log_final = _log_final(sw)
    panels, ratio_panels = [], []
    for pc in _combos(sw, rest)[:MAX_PANELS] if rest else [{}]:
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
                    div.append(f"{_show(x)}: {int(r['diverged'].sum())}/{len(r)}")
            label = _label({hue: hv}) if hue else "all runs"
            series.append(
                plots.Series(
                    label,
                    xs,
                    np.array(c),
                    np.array(lo),
                    np.array(hi),
                    plots.color(j),
                    style="errorbar",
                )
            )
            if div:
                notes.append(f"{label}: diverged at {x_key} " + ", ".join(div))
        panels.append(plots.Panel(_label(pc) or "final test MSE", series, notes))
        if hue == "bn" and "none" in hue_values:
            rs = []
            for j, hv in enumerate(hue_values):
                if hv == "none":
                    continue
                c, lo, hi = [], [], []
                for x in sw.axes[x_key]:
                    e = _paired(sw, log_final, {**pc, x_key: x}, {"bn": "none"}, {"bn": hv})
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
            title = "BN / no-BN ratio, paired by seed" + (f"\n{_label(pc)}" if pc else "")
            if vspan:
                title += f"\nshaded: batch {SMALL_BATCH}-{LARGE_BATCH}, the notes' minimum"
            ylabel = "error ratio (geo-mean, 95% CI)"
            ratio_panels.append(plots.Panel(title, rs, (), vspan, 1.0, ylabel))
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
    )
    return {f"{sw.name}_{kind}.png": fig}


def _grad_layers_figure(sw: _Sweep) -> dict[str, Callable[[], Figure]]:
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
                    _label({hue: hv}) if hue else sw.name, layers, c, lo, hi, plots.color(j)
                )
            )
        if series:
            panels.append(plots.Panel(_label(pc) or sw.name, series))
    if not panels:
        return {}
    n_layers = sw.grad_scale.shape[1]
    fig = partial(
        plots.grid_figure,
        panels,
        ncols=_layout(sw, rest) if rest else 1,
        xlabel="Linear layer (input to output)",
        ylabel="weight-gradient std",
        xticks=list(range(1, n_layers + 1)),
        title=f"{sw.name}: per-layer gradient scale (geo-mean over epochs; median, IQR)",
    )
    return {f"{sw.name}_grad_layers.png": fig}


def _violin_rows(sw: _Sweep, hue: str | None) -> tuple[list[dict], dict]:
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


def _layer_values(sw: _Sweep, run_keys) -> tuple[list[np.ndarray], int]:
    """Last-step weight gradients per Linear layer, pooled over runs; (layers, n runs)."""
    per_layer: list[list[float]] = []
    n_runs = 0
    for key in run_keys:
        grads = (sw.diagnostics.get(key) or {}).get("weight_grad") or []
        n_runs += bool(grads)
        for i, g in enumerate(grads):
            while len(per_layer) <= i:
                per_layer.append([])
            per_layer[i].extend(float(v) for v in g if v is not None)
    return [np.array(v) for v in per_layer], n_runs


def _violin_figure(sw: _Sweep) -> dict[str, Callable[[], Figure]]:
    """The notes' `weights_vp(model, att="grad")`: last-step weight gradients per layer,
    pooled over seeds; one panel per hue value (columns) and configuration (rows)."""
    if not sw.diagnostics:
        return {}
    hue = _hue(sw)
    hue_values = sw.axes.get(hue, [None]) if hue else [None]
    rows, fixed = _violin_rows(sw, hue)
    panels, n_layers = [], 0
    for row in rows:
        for hv in hue_values:
            where = {**fixed, **row, **({hue: hv} if hue else {})}
            layers, n_runs = _layer_values(sw, sw.runs.loc[sw.select(**where), "run_key"])
            title = ", ".join(x for x in (_label({hue: hv}) if hue else "", _label(row)) if x)
            panels.append((f"{title or sw.name} ({n_runs} seeds)", layers))
            n_layers = max(n_layers, len(layers))
    if not n_layers:
        return {}
    fig = partial(
        plots.violin_figure,
        panels,
        [f"L{i}" for i in range(1, n_layers + 1)],
        ylabel="weight gradient",
        title=f"{sw.name}: last-step weight gradients per layer"
        + (f" ({_label(fixed)})" if fixed else ""),
        ncols=len(hue_values),
    )
    return {f"{sw.name}_grad_violins.png": fig}


def _figures(sw: _Sweep) -> dict[str, Callable[[], Figure]]:
    figs: dict[str, Callable[[], Figure]] = {}
    figs.update(_curves_figures(sw, "test_mse", "test MSE", "test_curves"))
    figs.update(_curves_figures(sw, "train_mse", "train MSE", "train_curves"))
    if "lr" in sw.axes:
        figs.update(_final_by(sw, "lr", "lr_curve", "learning rate"))
    if "batch_size" in sw.axes:
        figs.update(_final_by(sw, "batch_size", "batch_size_curve", "batch size"))
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
    return figs


# ---------------------------------------------------------------------------
# Claims of the course notes


@dataclass(frozen=True)
class ClaimRow:
    id: str
    section: str  # of the course notes
    claim: str
    sweep: str
    comparison: str  # short, for the headline table
    test: str  # the operationalization, one line
    effect: str  # formatted, with its 95% CI
    estimate: float  # on the scale of the test (log ratio, epochs, ...)
    ci_low: float
    ci_high: float
    n: int  # seeds (or pairs) behind the interval
    verdict: str
    note: str


COMPARISON = {  # every comparison is paired by seed
    "1a": "zscore vs none on quad2: epochs to T",
    "1b": "zscore vs none on quad2_scaled: epochs to T",
    "G": "pre vs none, sigmoid: spread of per-layer gradient std",
    "2a": "pre vs none, sigmoid: final test MSE",
    "2b": "trend of the pre/none MSE ratio with depth",
    "3": f"pre/none MSE ratio, batch < {SMALL_BATCH} vs >= {LARGE_BATCH}",
    "4a (no BN)": "smallest and largest lr vs the best lr, no BN",
    "4a (BN)": "smallest and largest lr vs the best lr, BN",
    "4b": f"gain from tuning lr away from {COURSE_LR:g}, BN vs no BN",
    "5": "pre/none MSE ratio, tanh vs sigmoid",
    "6a": "pre vs none: final dead-unit fraction",
    "6b": "post vs none: final dead-unit fraction",
    "7": "post vs pre: final test MSE",
}


def _log_final(sw: _Sweep) -> pd.Series:
    return pd.Series(stats.log_mse(sw.runs["final_test_mse"]), index=sw.runs["run_key"].values)


def _run_values(sw: _Sweep, column: str) -> pd.Series:
    return pd.Series(sw.runs[column].to_numpy(float), index=sw.runs["run_key"].values)


def _seed_diffs(sw: _Sweep, value: pd.Series, where: Mapping, a: Mapping, b: Mapping):
    """Per seed, `value(b) - value(a)` averaged over the cells of the remaining axes.

    Runs are paired by seed (and cell); a NaN difference (diverged run) is dropped.
    Returns (per-seed Series, number of dropped cell pairs).
    """
    cells = [k for k in sw.axes if k not in {**where, **a, **b}]
    ra = sw.runs[sw.select(**where, **a)]
    rb = sw.runs[sw.select(**where, **b)]
    cols = ["seed", *cells, "run_key"]
    m = ra[cols].merge(rb[cols], on=["seed", *cells], suffixes=("_a", "_b"))
    m["diff"] = value.reindex(m["run_key_b"]).to_numpy() - value.reindex(m["run_key_a"]).to_numpy()
    dropped = int((~np.isfinite(m["diff"])).sum())
    per_seed = m.groupby("seed", sort=True)["diff"].agg(_nanmean)
    return per_seed, dropped


def _paired(sw: _Sweep, value: pd.Series, where: Mapping, a: Mapping, b: Mapping):
    d, dropped = _seed_diffs(sw, value, where, a, b)
    e = stats.paired_effect(np.zeros(len(d)), d.to_numpy())
    return stats.Effect(e.estimate, e.ci_low, e.ci_high, e.n, e.n_dropped + dropped, True)


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * (math.exp(x) - 1):+.0f}%"


def _fmt_ratio(e: stats.Effect) -> str:
    """A log-ratio effect as the change of the geometric mean, with its CI."""
    return f"{_pct(e.estimate)} [{_pct(e.ci_low)}, {_pct(e.ci_high)}]"


def _fmt_plain(e: stats.Effect, unit: str, scale: float = 1.0, digits: int = 2) -> str:
    def f(x):
        return "n/a" if not math.isfinite(x) else f"{x * scale:+.{digits}f}"

    return f"{f(e.estimate)} {unit} [{f(e.ci_low)}, {f(e.ci_high)}]"


def _row(
    cid,
    section,
    claim,
    sweep,
    test,
    effect: stats.Effect,
    shown: str,
    claimed: str,
    note: str = "",
    margin: float = 0.0,
    verdict: str | None = None,
) -> ClaimRow:
    v = verdict or stats.effect_verdict(effect, claimed, margin)
    return ClaimRow(
        cid,
        section,
        claim,
        sweep,
        COMPARISON.get(cid, ""),
        test,
        shown,
        effect.estimate,
        effect.ci_low,
        effect.ci_high,
        effect.n,
        v,
        note,
    )


def _not_run(cid, section, claim, sweep, why) -> ClaimRow:
    nan = math.nan
    comparison = COMPARISON.get(cid, "")
    return ClaimRow(cid, section, claim, sweep, comparison, "", "", nan, nan, nan, 0, NOT_RUN, why)


def _requirement(sweeps: Mapping[str, _Sweep], name: str, needs: Mapping[str, Sequence]):
    """The sweep if it exists and has every needed value; else why not (a string)."""
    sw = sweeps.get(name)
    if sw is None:
        return f"sweep `{name}` is not in params.yaml"
    lacking = [f"{k}={_show(v)}" for k, vs in needs.items() for v in vs if not sw.has(k, v)]
    if lacking:
        return f"sweep `{name}` has no runs with " + ", ".join(lacking)
    return sw


def _claim_normalization(sweeps) -> list[ClaimRow]:
    claim = "z-score normalization of the inputs speeds up convergence of the sigmoid network"
    rows = []
    for cid, ds in (("1a", "quad2"), ("1b", "quad2_scaled")):
        sw = _requirement(
            sweeps, "normalization", {"dataset": [ds], "normalization": ["none", "zscore"]}
        )
        if isinstance(sw, str):
            rows.append(_not_run(cid, "1.1", claim, "normalization", sw))
            continue
        where, a, b = {"dataset": ds}, {"normalization": "none"}, {"normalization": "zscore"}
        epochs = pd.Series(
            stats.censor(sw.runs["epochs_to_threshold"], sw.epochs), index=sw.runs["run_key"].values
        )
        e = _paired(sw, epochs, where, a, b)
        fin = _paired(sw, _log_final(sw), where, a, b)
        reached = []
        for n in ("none", "zscore"):
            mask = sw.select(**where, normalization=n)
            hit = int(np.isfinite(sw.runs.loc[mask, "epochs_to_threshold"]).sum())
            reached.append(f"{n} {hit}/{int(mask.sum())}")
        note = (
            f"Reached T={sw.threshold:.3g} within {sw.epochs} epochs: "
            f"{', '.join(reached)}. Final test MSE, z-score vs none: {_fmt_ratio(fin)}."
        )
        if ds == "quad2":
            note += (
                " quad2's features are standard normal by construction (SPEC 2), so "
                "z-scoring is nearly the identity: no effect is expected here; the claim "
                "is about badly scaled inputs (1b)."
            )
        test = (
            f"epochs until train MSE <= T (not reached = {sw.epochs + 1}), zscore - none, "
            f"dataset={ds}, paired by seed"
        )
        rows.append(
            _row(
                cid,
                "1.1",
                claim,
                "normalization",
                test,
                e,
                _fmt_plain(e, "epochs", digits=1),
                stats.DECREASE,
                note,
            )
        )
    return rows


def _bn_ratio_by(sw: _Sweep, key: str, where: Mapping) -> dict:
    """Per value of `key`: the per-seed log ratio of final test MSE, bn=pre / bn=none."""
    out = {}
    value = _log_final(sw)
    for v in sw.axes[key]:
        d, _ = _seed_diffs(sw, value, {**where, key: v}, {"bn": "none"}, {"bn": "pre"})
        out[v] = d
    return out


def _claim_depth(sweeps) -> list[ClaimRow]:
    sec = "3.2"
    needs = {"activation": ["sigmoid"], "bn": ["none", "pre"]}
    sw = _requirement(sweeps, "depth", needs)
    c2a = "BN (before the activation) lowers the test error of the sigmoid network"
    c2b = "... and helps more as the network gets deeper"
    if isinstance(sw, str) or "depth" not in sw.axes:
        why = sw if isinstance(sw, str) else "sweep `depth` has no depth axis"
        return [_not_run("2a", sec, c2a, "depth", why), _not_run("2b", sec, c2b, "depth", why)]
    where = {"activation": "sigmoid"}
    e = _paired(sw, _log_final(sw), where, {"bn": "none"}, {"bn": "pre"})
    by_depth = _bn_ratio_by(sw, "depth", where)
    per_depth = ", ".join(
        f"d{_show(k)} {_pct(stats.t_interval(v)[0])}" for k, v in by_depth.items()
    )
    rows = [
        _row(
            "2a",
            sec,
            c2a,
            "depth",
            "final test MSE, bn=pre / bn=none, sigmoid, mean over depths, paired by seed",
            e,
            _fmt_ratio(e),
            stats.DECREASE,
            f"Per depth: {per_depth}.",
        )
    ]
    table = pd.DataFrame(by_depth)  # (seeds, depths) of log ratios
    depths = np.array(list(by_depth), dtype=float)
    s = stats.slopes(depths, table.to_numpy())
    es = stats.paired_effect(np.zeros(len(s)), s)
    rows.append(
        _row(
            "2b",
            sec,
            c2b,
            "depth",
            "per-seed slope of log(final test MSE ratio pre/none) against depth, sigmoid",
            es,
            _fmt_ratio(es) + " per layer",
            stats.DECREASE,
            "Effect: change of the BN/no-BN error ratio per added hidden layer.",
        )
    )
    return rows


def _claim_tanh(sweeps) -> list[ClaimRow]:
    claim = "BN helps tanh networks more than sigmoid networks"
    needs = {"activation": ["sigmoid", "tanh"], "bn": ["none", "pre"]}
    sw = _requirement(sweeps, "depth", needs)
    if isinstance(sw, str):
        return [_not_run("5", "3.2", claim, "depth", sw)]
    value = _log_final(sw)
    ds = {
        a: _seed_diffs(sw, value, {"activation": a}, {"bn": "none"}, {"bn": "pre"})[0]
        for a in ("sigmoid", "tanh")
    }
    both = pd.concat(ds, axis=1)  # (seeds, activations)
    e = stats.paired_effect(both["sigmoid"], both["tanh"])
    note = "BN effect: " + ", ".join(f"{a} {_pct(stats.t_interval(d)[0])}" for a, d in ds.items())
    return [
        _row(
            "5",
            "3.2",
            claim,
            "depth",
            "log(pre/none) of final test MSE, tanh minus sigmoid, mean over depths, paired by seed",
            e,
            _fmt_ratio(e),
            stats.DECREASE,
            note + ". Effect: how much more BN lowers tanh's error than sigmoid's.",
        )
    ]


def _claim_batch(sweeps) -> list[ClaimRow]:
    claim = "BN needs batches of roughly 15-30 or more"
    sw = _requirement(sweeps, "batch_size", {"bn": ["none", "pre"]})
    sizes = [] if isinstance(sw, str) else sw.axes.get("batch_size", [])
    small = [b for b in sizes if b < SMALL_BATCH]
    large = [b for b in sizes if b >= LARGE_BATCH]
    if isinstance(sw, str) or not small or not large:
        why = (
            sw
            if isinstance(sw, str)
            else (f"needs batch sizes below {SMALL_BATCH} and at least {LARGE_BATCH}")
        )
        return [_not_run("3", "3.1", claim, "batch_size", why)]
    by = _bn_ratio_by(sw, "batch_size", {})
    t = pd.DataFrame(by)
    d_small = t[small].apply(lambda r: _nanmean(r), axis=1)
    d_large = t[large].apply(lambda r: _nanmean(r), axis=1)
    e = stats.paired_effect(d_large, d_small)
    es, el = stats.t_interval(d_small)[0], stats.t_interval(d_large)[0]
    note = (
        f"BN vs no BN: {_pct(es)} at batch < {SMALL_BATCH} ({', '.join(map(_show, small))}),"
        f" {_pct(el)} at batch >= {LARGE_BATCH} ({', '.join(map(_show, large))}). The ratio "
        "controls for the number of steps per epoch, which also changes with batch size."
    )
    return [
        _row(
            "3",
            "3.1",
            claim,
            "batch_size",
            f"log(pre/none) of final test MSE at batch < {SMALL_BATCH} minus at batch >= "
            f"{LARGE_BATCH}, paired by seed",
            e,
            _fmt_ratio(e),
            stats.INCREASE,
            note,
        )
    ]


def _eligible_lrs(sw: _Sweep, where: Mapping) -> list:
    """Learning rates at which at most half of the runs diverged."""
    out = []
    for lr in sw.axes["lr"]:
        r = sw.runs[sw.select(**where, lr=lr)]
        if len(r) and r["diverged"].sum() * 2 <= len(r):
            out.append(lr)
    return out


def _best_lr(sw: _Sweep, where: Mapping, lrs: Sequence):
    gm = [
        stats.describe(
            sw.runs.loc[sw.select(**where, lr=lr) & ~sw.runs["diverged"], "final_test_mse"]
        )["geomean"]
        for lr in lrs
    ]
    return lrs[int(np.nanargmin(gm))]


def _claim_lr(sweeps) -> list[ClaimRow]:
    sec = "3.3-3.4"
    c4a = "test error against learning rate is U-shaped"
    c4b = "with BN the learning rate matters more (tuning it gains more)"
    sw = _requirement(sweeps, "learning_rate", {"bn": ["none", "pre"]})
    if isinstance(sw, str) or len(sw.axes.get("lr", [])) < 3:
        why = sw if isinstance(sw, str) else "needs at least 3 learning rates"
        return [
            _not_run("4a (no BN)", sec, c4a, "learning_rate", why),
            _not_run("4a (BN)", sec, c4a, "learning_rate", why),
            _not_run("4b", sec, c4b, "learning_rate", why),
        ]
    rows = []
    value = _log_final(sw)
    gains = {}
    for bn in ("none", "pre"):
        lrs = _eligible_lrs(sw, {"bn": bn})
        all_lrs = sw.axes["lr"]
        beyond = [lr for lr in all_lrs if lr not in lrs]
        cid = f"4a ({'no BN' if bn == 'none' else 'BN'})"
        if len(lrs) < 3:
            rows.append(
                _not_run(
                    cid,
                    sec,
                    c4a,
                    "learning_rate",
                    "fewer than 3 learning rates without mass divergence",
                )
            )
            continue
        best = _best_lr(sw, {"bn": bn}, lrs)
        lo, hi = lrs[0], lrs[-1]
        left = _paired(sw, value, {"bn": bn}, {"lr": best}, {"lr": lo})
        right = _paired(sw, value, {"bn": bn}, {"lr": best}, {"lr": hi})
        if best in (lo, hi):
            v = stats.NOT_SUPPORTED  # the minimum sits on the edge: monotone on this grid
        else:
            v = stats.combine_verdicts(
                [
                    stats.effect_verdict(left, stats.INCREASE),
                    stats.effect_verdict(right, stats.INCREASE),
                ]
            )
        shown = (
            f"lr {_show(lo)}: {_fmt_ratio(left)}; lr {_show(hi)}: {_fmt_ratio(right)} "
            f"(vs best lr {_show(best)})"
        )
        note = f"Best lr {_show(best)} (lowest geometric-mean final test MSE)."
        if beyond:
            note += f" Excluded as mostly diverged: lr {', '.join(map(_show, beyond))}."
        worst = left if left.ci_low <= right.ci_low else right
        rows.append(
            _row(
                cid,
                sec,
                c4a,
                "learning_rate",
                f"final test MSE at the smallest and at the largest lr vs the best lr "
                f"(bn={bn}); both must be higher",
                worst,
                shown,
                stats.INCREASE,
                note,
                verdict=v,
            )
        )
        if sw.has("lr", COURSE_LR):
            d, _ = _seed_diffs(sw, value, {"bn": bn}, {"lr": best}, {"lr": COURSE_LR})
            gains[bn] = (d, best)
    if len(gains) == 2:
        both = pd.concat({bn: d for bn, (d, _) in gains.items()}, axis=1)  # (seeds, bn)
        e = stats.paired_effect(both["none"], both["pre"])
        g = {bn: _pct(stats.t_interval(d)[0]) for bn, (d, _) in gains.items()}
        note = (
            f"Error at lr {_show(COURSE_LR)} relative to the best lr: no BN {g['none']} "
            f"(best {_show(gains['none'][1])}), BN {g['pre']} (best "
            f"{_show(gains['pre'][1])})."
        )
        rows.append(
            _row(
                "4b",
                sec,
                c4b,
                "learning_rate",
                f"gain from tuning lr = log(MSE at the notes' lr {_show(COURSE_LR)} / "
                "MSE at the best lr), BN minus no BN, paired by seed",
                e,
                _fmt_ratio(e),
                stats.INCREASE,
                note,
            )
        )
    else:
        rows.append(
            _not_run("4b", sec, c4b, "learning_rate", f"needs lr {_show(COURSE_LR)} in the grid")
        )
    return rows


def _claim_dead(sweeps) -> list[ClaimRow]:
    claim = "BN mitigates dead ReLUs"
    rows = []
    for cid, bn, where in (("6a", "pre", "before"), ("6b", "post", "after")):
        sw = _requirement(sweeps, "dead_relu", {"activation": ["relu"], "bn": ["none", bn]})
        text = f"{claim} (BN {where} the activation)"
        if isinstance(sw, str) or not np.isfinite(sw.runs["dead_final"]).any():
            why = sw if isinstance(sw, str) else "no dead-unit fractions in the history"
            rows.append(_not_run(cid, "3.4", text, "dead_relu", why))
            continue
        e = _paired(
            sw, _run_values(sw, "dead_final"), {"activation": "relu"}, {"bn": "none"}, {"bn": bn}
        )
        base = stats.t_interval(sw.runs.loc[sw.select(bn="none"), "dead_final"])[0]
        rows.append(
            _row(
                cid,
                "3.4",
                text,
                "dead_relu",
                f"fraction of dead hidden units after the last epoch, bn={bn} minus "
                "bn=none, mean over depths, paired by seed",
                e,
                _fmt_plain(e, "pp", scale=100, digits=0),
                stats.DECREASE,
                f"Without BN, {100 * base:.0f}% of hidden units end dead.",
            )
        )
    return rows


def _claim_placement(sweeps) -> list[ClaimRow]:
    claim = "BN can go before or after the activation (placement does not matter)"
    sw = _requirement(sweeps, "bn_placement", {"bn": ["pre", "post"]})
    if isinstance(sw, str):
        return [_not_run("7", "2.2", claim, "bn_placement", sw)]
    value = _log_final(sw)
    e = _paired(sw, value, {}, {"bn": "pre"}, {"bn": "post"})
    per = ""
    if "activation" in sw.axes:
        parts = []
        for a in sw.axes["activation"]:
            ea = _paired(sw, value, {"activation": a}, {"bn": "pre"}, {"bn": "post"})
            parts.append(f"{a} {_fmt_ratio(ea)}")
        per = "Per activation (post vs pre): " + ", ".join(parts) + "."
    margin = f"{100 * (math.exp(EQUIVALENCE_MARGIN) - 1):.0f}%"
    return [
        _row(
            "7",
            "2.2",
            claim,
            "bn_placement",
            f"final test MSE, bn=post / bn=pre, mean over all other axes, paired by seed; "
            f"'no difference' = CI within +-{margin}",
            e,
            _fmt_ratio(e),
            stats.NO_DIFFERENCE,
            per,
            margin=EQUIVALENCE_MARGIN,
        )
    ]


def _claim_gradients(sweeps) -> list[ClaimRow]:
    claim = "BN evens out gradients across layers (the Glorot condition)"
    sw = _requirement(sweeps, "depth", {"activation": ["sigmoid"], "bn": ["none", "pre"]})
    if isinstance(sw, str) or not np.isfinite(sw.runs["grad_spread"]).any():
        why = sw if isinstance(sw, str) else "no per-layer gradient statistics in the history"
        return [_not_run("G", "1.2", claim, "depth", why)]
    where = {"activation": "sigmoid"}
    e = _paired(sw, _run_values(sw, "grad_spread"), where, {"bn": "none"}, {"bn": "pre"})

    def mean_of(column, **w):
        return stats.t_interval(sw.runs.loc[sw.select(**where, **w), column])[0]

    spreads = []
    if "depth" in sw.axes:
        for d in sw.axes["depth"]:
            none, pre = (mean_of("grad_spread", bn=b, depth=d) for b in ("none", "pre"))
            spreads.append(f"d{_show(d)} {none:.2f} -> {pre:.2f}")
    tilt = {b: mean_of("grad_tilt", bn=b) for b in ("none", "pre")}
    note = (
        f"Spread without -> with BN, in decades: {', '.join(spreads) or '—'}. First-layer vs "
        f"output-layer gradient, log10 ratio: {tilt['none']:+.2f} without BN (vanishing toward "
        f"the input when negative), {tilt['pre']:+.2f} with BN."
    )
    test = (
        "spread = log10(largest / smallest per-layer weight-gradient std, each averaged "
        "geometrically over epochs), bn=pre minus bn=none, sigmoid, mean over depths, "
        "paired by seed"
    )
    return [
        _row("G", "1.2", claim, "depth", test, e, _fmt_plain(e, "decades"), stats.DECREASE, note)
    ]


CLAIMS: tuple[Callable[[Mapping[str, _Sweep]], list[ClaimRow]], ...] = (
    _claim_normalization,
    _claim_gradients,
    _claim_depth,
    _claim_batch,
    _claim_lr,
    _claim_tanh,
    _claim_dead,
    _claim_placement,
)

# Shown where a claim is not supported on this data: a params.yaml variant that would
# test it under conditions closer to the notes' argument. Suggestions, not findings.
HINTS = {
    "1b": "if many runs have not reached T (see above), they are still on the initial "
    "plateau; more epochs show whether z-scoring shortens it: `sweeps.normalization.epochs: 100`.",
    "2a": "longer training gives BN's faster start time to show: `sweeps.depth.epochs: 100`.",
    "2b": "more and larger depths: `sweeps.depth.depth: [1, 2, 4, 6, 8]`.",
    "3": "the BN / no-BN ratio only partly controls for the number of steps per epoch; one "
    "sweep per batch size with `epochs` scaled to equal step counts isolates the "
    "running-statistics effect.",
    "4a (no BN)": "a wider grid shows both arms: `sweeps.learning_rate.lr` from 0.0001 to 3.",
    "4a (BN)": "a wider grid shows both arms: `sweeps.learning_rate.lr` from 0.0001 to 3.",
    "4b": "the notes argue BN gives deeper, harder models room to tune: "
    "`sweeps.learning_rate.depth: 4` with `epochs: 100`.",
    "5": "the notes' argument (tanh is zero-centred) concerns deep nets where gradients "
    "vanish without BN: `sweeps.depth.depth: [2, 4, 6, 8]`.",
    "6a": "larger steps kill more ReLUs without BN: `sweeps.dead_relu.lr: 0.1`.",
    "6b": "larger steps kill more ReLUs without BN: `sweeps.dead_relu.lr: 0.1`.",
    "7": "BN after the activation normalizes with running statistics of skewed "
    "activations; larger batches test whether the gap closes: "
    "`sweeps.bn_placement.batch_size: 50`.",
    "G": "the notes' argument concerns deep networks: `sweeps.depth.depth: [1, 2, 4, 6, 8]`.",
}
VERDICT_HINT = {
    stats.NOT_SUPPORTED: "*Does not hold on this data. Variant to try:*",
    stats.INCONCLUSIVE: "*Not established on this data. Variant to try:*",
}


def _claims(sweeps: Mapping[str, _Sweep]) -> list[ClaimRow]:
    rows = [r for f in CLAIMS for r in f(sweeps)]
    return rows


# ---------------------------------------------------------------------------
# Markdown


def _cell(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, float | np.floating):
        return f"{float(x):.{digits}g}"
    return str(x).replace("|", "\\|")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


VERDICT_MARK = {
    stats.SUPPORTED: "✅ supported",
    stats.NOT_SUPPORTED: "❌ not supported",
    stats.INCONCLUSIVE: "❔ inconclusive",
    NOT_RUN: "⏸ not run",
}

COURSE = {
    "normalization": "Notes 1.1: a 3-hidden-layer sigmoid network with Xavier init on raw, "
    "z-scored and min-max-scaled inputs; the notes compare train and test MSE curves and the "
    "per-layer gradient violins.",
    "bn_placement": "Notes 2.2: BatchNorm before (`pre`) or after (`post`) the activation, "
    "against none.",
    "batch_size": "Notes 3.1: BN's running statistics need batches of roughly 15-30 or more.",
    "depth": "Notes 3.2: 1 to 4 hidden layers on quad5 with and without BN, drawn as 2x2 grids "
    "of MSE curves; the deeper the network, the more BN should help, and more for tanh.",
    "learning_rate": "Notes 3.3-3.4: with BN the learning rate matters more, and error against "
    "the learning rate is U-shaped.",
    "dead_relu": "Notes 3.4: BN mitigates dead ReLUs in stacked ReLU networks.",
}


def _claims_markdown(rows: Sequence[ClaimRow]) -> str:
    header = [
        "#",
        "Notes §",
        "Claim",
        "Comparison (paired by seed), sweep",
        "Effect [95% CI]",
        "Verdict",
    ]
    body = [
        [
            r.id,
            r.section,
            r.claim,
            f"{r.comparison}; `{r.sweep}`",
            r.effect or "—",
            VERDICT_MARK[r.verdict],
        ]
        for r in rows
    ]
    out = [_md_table(header, body), "", "How each claim is tested, and what the numbers say:", ""]
    for r in rows:
        text = f"- **{r.id}**: "
        if r.verdict == NOT_RUN:
            text += f"not run: {r.note}."
        else:
            text += f"{r.test} (n={r.n} seeds). {r.note}".rstrip()
            if r.verdict in VERDICT_HINT and r.id in HINTS:
                text += f" {VERDICT_HINT[r.verdict]} {HINTS[r.id]}"
        out.append(text)
    return "\n".join(out)


METHODS = f"""\
Each configuration is trained with several seeds and compared by its distribution over
seeds, never by one run (SPEC, Precision). Conventions:

- **Effects** are mean differences over seeds with a 95% Student-t interval. MSE is compared
  on the log scale (it spans orders of magnitude and effects on it are multiplicative);
  such an effect is shown as the change of the geometric mean, e.g. -40% = BN divides the
  error by 1.7.
- **Paired by seed**: two runs with the same seed, data set, batch size and layer sizes
  draw the same batches and start from the same Linear weights (BatchNorm and the
  activation draw no random numbers), so the per-seed difference removes the seed-to-seed
  spread. Pooled comparisons average each seed's
  differences over the other axes first.
- **Verdict**, computed from the interval: *supported* when it excludes 0 on the side the
  notes predict, *not supported* when it excludes 0 on the other side (or, for a "no
  difference" claim, lies wholly outside the margin), *inconclusive* otherwise.
- **Convergence**: epochs until the train MSE first falls to T, where T is
  {THRESHOLD_FRACTION:g} x the sweep's median first-epoch train MSE (one T per sweep, given
  in its section); a run that never gets there counts as epochs + 1 where averaged.
- **Diverged runs** (non-finite loss) are counted in every table and figure note, and
  left out of the statistics; a pair with a diverged run is dropped (for epochs to T, a
  diverged run counts as never reaching T).
"""


def _sweep_markdown(
    sw: _Sweep, summary: pd.DataFrame, figures: Sequence[str], claim_ids: Sequence[str]
) -> str:
    n_div = int(sw.runs["diverged"].sum())
    seeds = ", ".join(map(_show, sw.seeds))
    axes = "; ".join(f"{k} ∈ {{{', '.join(map(_show, v))}}}" for k, v in sw.axes.items())
    fixed = ", ".join(f"{k}={_show(v)}" for k, v in sw.fixed.items())
    lines = [f"## Sweep `{sw.name}`", ""]
    if sw.name in COURSE:
        lines += [COURSE[sw.name], ""]
    lines += [
        f"Axes: {axes or 'none'}. Fixed: {fixed}. Seeds ({len(sw.seeds)}): {seeds}.",
        f"Runs: {len(sw.runs)}, diverged: {n_div}. Convergence threshold T = "
        f"{_cell(sw.threshold)} (train MSE).",
    ]
    if claim_ids:
        lines.append("Claims judged on this sweep: " + ", ".join(claim_ids) + ".")
    if len(sw.configs) > MAX_PANELS:
        lines.append(f"Figures show the first {MAX_PANELS} panels; the table lists all.")
    lines.append("")
    if not any("_test_curves" in name for name in figures):
        lines += ["No test-MSE curves to draw: history.csv has no finite per-epoch test MSE.", ""]
    for name in figures:
        lines += [f"![{name[:-4]}](figures/{name})", ""]
    keys = list(sw.axes)
    header = [
        *keys,
        "n",
        "diverged",
        "final test MSE geo-mean [95% CI]",
        "final test MSE median",
        "best test MSE geo-mean",
        "epochs to T: median (reached/n)",
    ]
    has_dead = np.isfinite(summary["dead_fraction_final_mean"]).any()
    if has_dead:
        header.append("dead units (mean)")
    rows = []
    for cfg, s in zip(sw.configs, summary.itertuples(), strict=True):
        ci = (
            f"{_cell(s.final_test_mse_geomean)} [{_cell(s.final_test_mse_ci_low)}, "
            f"{_cell(s.final_test_mse_ci_high)}]"
        )
        n_ok = s.n_seeds - s.n_diverged
        med = s.epochs_to_threshold_median
        med = f"> {sw.epochs}" if med > sw.epochs else _cell(med)
        ep = f"{med} ({s.n_reached}/{n_ok})" if n_ok and math.isfinite(sw.threshold) else "—"
        div = f"**{s.n_diverged}**" if s.n_diverged else "0"
        row = [
            *(_show(cfg[k]) for k in keys),
            s.n_seeds,
            div,
            ci,
            s.final_test_mse_median,
            s.best_test_mse_geomean,
            ep,
        ]
        if has_dead:
            row.append(s.dead_fraction_final_mean)
        rows.append(row)
    lines += [_md_table(header, rows), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Metrics and plot tables


def _slug(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_")


def _metrics(sweeps: Mapping[str, _Sweep], summary: pd.DataFrame, rows: Sequence[ClaimRow]):
    r6 = stats.round_sig
    out: dict[str, Any] = {"claims": {}, "sweeps": {}}
    for r in rows:
        out["claims"][_slug(r.id)] = {
            "verdict": r.verdict,
            "estimate": r6(r.estimate),
            "ci_low": r6(r.ci_low),
            "ci_high": r6(r.ci_high),
            "n": r.n,
        }
    out["verdicts"] = {v: sum(r.verdict == v for r in rows) for v in VERDICT_MARK}
    for name, sw in sweeps.items():
        s = summary[summary["sweep"] == name]
        best = (
            s.loc[s["final_test_mse_geomean"].idxmin()]
            if s["final_test_mse_geomean"].notna().any()
            else None
        )
        out["sweeps"][name] = {
            "runs": len(sw.runs),
            "diverged": int(sw.runs["diverged"].sum()),
            "configurations": len(sw.configs),
            "convergence_threshold": r6(sw.threshold),
            "best_config": None if best is None else best["config"],
            "best_final_test_mse_geomean": None
            if best is None
            else r6(best["final_test_mse_geomean"]),
        }
    return out


def _plot_tables(sw: _Sweep) -> dict[str, pd.DataFrame]:
    """Median train and test MSE per epoch per configuration, long format (DVC plots).

    Columns: config, epoch, n_finite (runs still finite), then the medians, test last
    (the column DVC plots when none is named).
    """
    metrics = [m for m in ("train_mse", "test_mse") if m in sw.curves]
    if not metrics:
        return {}
    epochs = sw.curves[metrics[0]].columns.to_numpy()
    parts = []
    for i, cfg in enumerate(sw.configs):
        keys = sw.runs.loc[sw.runs["cfg"] == i, "run_key"]
        m = {metric: sw.curves[metric].loc[keys].to_numpy() for metric in metrics}  # (runs, epochs)
        df = pd.DataFrame(
            {
                "config": _label(cfg) or sw.name,
                "epoch": epochs,
                "n_finite": np.isfinite(m[metrics[-1]]).sum(axis=0),
            }
        )
        for metric in metrics:
            df[f"{metric}_median"] = stats.column_quantiles(m[metric], [0.5])[0]
        parts.append(df)
    return {f"{sw.name}_curves": pd.concat(parts, ignore_index=True)} if parts else {}


# ---------------------------------------------------------------------------


def claims_table(sweeps: Mapping[str, SweepData]) -> pd.DataFrame:
    """Only the claims of the notes, judged on the given sweeps (no figures)."""
    prepared = {name: _prepare(name, data) for name, data in sweeps.items()}
    return pd.DataFrame([asdict(r) for r in _claims(prepared)])


def build_report(sweeps: Mapping[str, SweepData]) -> Report:
    """The whole report from every sweep's tables; sections follow the mapping's order."""
    prepared = {name: _prepare(name, data) for name, data in sweeps.items()}
    summaries = {name: _summary(sw) for name, sw in prepared.items()}
    summary = pd.concat(summaries.values(), ignore_index=True) if summaries else pd.DataFrame()
    rows = _claims(prepared)
    figures: dict[str, Callable[[], Figure]] = {}
    sections = []
    for name, sw in prepared.items():
        figs = _figures(sw)
        figures.update(figs)
        ids = [r.id for r in rows if r.sweep == name and r.verdict != NOT_RUN]
        sections.append(_sweep_markdown(sw, summaries[name], list(figs), ids))
    toc = " · ".join(f"[{n}](#sweep-{n.lower().replace('.', '')})" for n in prepared)
    md = (
        "\n".join(
            [
                "# Batch Normalization in small networks: the course's claims, tested",
                "",
                "Generated by the aggregate stage from `runs/<sweep>/`; every number below is "
                "computed from them. Sweeps: " + (toc or "none") + ".",
                "",
                "## Claims",
                "",
                _claims_markdown(rows),
                "",
                "## Method",
                "",
                METHODS,
                *sections,
            ]
        ).rstrip()
        + "\n"
    )
    claims = pd.DataFrame([asdict(r) for r in rows])
    plot_tables: dict[str, pd.DataFrame] = {}
    for sw in prepared.values():
        plot_tables.update(_plot_tables(sw))
    return Report(
        md,
        Figures(figures),
        summary,
        claims,
        _metrics(prepared, summary, rows),
        plot_tables,
    )
