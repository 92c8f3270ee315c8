"""The report's Markdown: the claims table and how each claim was tested, the method, and
one section per sweep."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from bnmodels.report.figures import CAP_TIMES, MAX_PANELS
from bnmodels.study import convergence, stats
from bnmodels.study.prepared import (
    CLASSIFICATION,
    REGRESSION,
    THRESHOLD_FRACTION,
    PreparedSweep,
    show,
)


def pct(x: float) -> str:
    return f"{100 * x:g}%"


VERDICT_MARK = {
    stats.SUPPORTED: "✅ supported",
    stats.NOT_SUPPORTED: "❌ not supported",
    stats.INCONCLUSIVE: "❔ inconclusive",
    stats.UNDECIDABLE: "⛔ cannot be decided with these seeds",
    stats.CONSISTENT: "consistent (exploratory)",
    stats.INCONSISTENT: "inconsistent (exploratory)",
    stats.UNDECIDED: "undecided (exploratory)",
}
VERDICT_HINT = {
    stats.NOT_SUPPORTED: "*Does not hold on this data. Variant to try:*",
    stats.INCONCLUSIVE: "*Not established on this data. Variant to try:*",
    stats.UNDECIDABLE: "*Not decidable with these seeds. Variant to try:*",
    stats.INCONSISTENT: "*Variant to try:*",
    stats.UNDECIDED: "*Variant to try:*",
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
    "classification": "The course helpers' `cla=True` path: the experiments of 2.2 and 3.2 "
    "(no BN, BN before and after the activation; 1 to 4 hidden layers) on overlapping "
    "Gaussian classes, trained on cross-entropy: does what BN does for regression carry over "
    "to classification? Accuracy is higher-is-better and drawn on a linear 0-1 axis.",
}


def cell(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, float | np.floating):
        return f"{float(x):.{digits}g}"
    return str(x).replace("|", "\\|")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


METHODS = f"""\
Rules chosen on these data: the run states' thresholds (5% change, 5% and 10% of the
constant predictor, 1e6 for an explosion), the guard (80-100% of the budget, 30% of runs
moving), the 25% and 10% margins and the per-claim cells were set or revised while
looking at the earlier sweeps' results (the section above lists the claims' and sweeps'
changes; the rules' own history is in git, `git log bnmodels/study`).

Each configuration is trained with several seeds and compared by its distribution over
seeds, never by one run (SPEC, Precision). Conventions:

- **Paired by seed**: two runs with the same seed, data set, batch size and layer sizes
  draw the same batches and start from the same Linear weights (BatchNorm and the
  activation draw no random numbers), so the per-seed difference removes the seed-to-seed
  spread. Each claim becomes one number per seed: its two arms' difference, averaged over
  the cells of the other axes first; a trend's slope; an interaction's difference of two
  such effects; an optimum's edge-minus-best contrasts.
- **Effects** are means of those per-seed numbers with a 95% Student-t interval. MSE and
  other error-like metrics are compared on the log scale (they span orders of magnitude
  and effects on them are multiplicative); such an effect is shown as the change of the
  geometric mean, e.g. -40% = BN divides the error by 1.7. Accuracy (higher is better) and
  other fractions are compared as they are: an effect is a difference in percentage
  points (pp).
- **p values are exact**: the sign-flip permutation test of the per-seed numbers (under
  no effect each seed's difference is as likely to have either sign; all 2^n patterns are
  enumerated), so no p is below what n seeds can give: 2/2^n two-sided, shown as
  "<= 0.002" for 10 seeds. *Seeds agreeing* counts the seeds whose own number has the
  claimed sign; *needed* is how many must agree for the test to reach the claim's level
  at all; *detectable* is the smallest true effect the claim's own exact test finds with
  80% power at the level the claim faces (alpha over its family's size, Holm's first
  step), simulated on resamples of the seeds' own residuals ("no effect can reach it"
  where n seeds cannot reach that level: the verdict is then *cannot be decided with
  these seeds*).
- **Epochs to a threshold** are censored (a run may never get there): such a comparison
  uses only the order of two paired runs (+1 later, -1 sooner, 0 for a tie or when
  neither gets there), and its effect is the net share of seeds; never is never averaged
  as a number of epochs. Its exact test is then the sign test, and its interval the exact
  (Clopper-Pearson) interval of the share of seeds, mapped to the net share.
- **Optimum**: each edge level of the axis against the best level between them, that level
  chosen on the other seeds (choosing it on the same data would favour it); both edges
  must be worse, so p is the larger of the two edges' p-values.
- **Primary and exploratory**: a claim is primary only if `registry.yaml` (derived from
  git by `bnmodels registry`) shows it was committed before its sweep first had results
  on the seeds it is judged on, and params.yaml marks it `primary: true`. Holm's method
  corrects the primary family (family-wise error {stats.ALPHA:g}); a primary claim is
  *supported* when the corrected p < {stats.ALPHA:g} and the effect has the expected sign,
  *not supported* when it has the other, *inconclusive* otherwise. A *same* claim has two
  exact tests, equivalence (two one-sided tests against the margin) and difference (the
  effect lies outside the margin); the smaller p is the claim's, corrected like any other,
  and says which way: one rule for supported and not supported. A same-claim whose margin
  is narrower than its seeds can show (a true zero would be shown within it less than
  80% of the time at its level) *cannot be decided with these seeds*. Exploratory claims
  keep their uncorrected p and get a reading, *consistent*, *inconsistent* or
  *undecided*, never a verdict: Holm cannot undo choosing a claim after seeing the data.
  The interval shown is the uncorrected 95% interval, so it may exclude 0 where the
  corrected verdict is still inconclusive.
- **Per cell** (reports/claim_cells.csv): a claim that averages over cells (depths,
  activations, a trend's levels, an interaction's groups) also gets its effect in each
  cell, with each arm's state there and an interval simultaneous over the claim's cells
  (Bonferroni: each at 1 - 0.05/k); the table says in which cells the effect is clear, in
  which it goes the other way, and when all of it comes from cells where one arm ends on
  the plateau. An interaction's cells are the pair's own effect in each group, the
  comparison group named as such.
- **Baseline**: the constant predictor, which predicts the train labels' mean (for
  classification, the train class frequencies; accuracy: the majority class), scored on
  the run's own test set. It is in every table and is the dotted line of every error
  figure; R² = 1 - test MSE / the constant predictor's test MSE.
- **Run states** (SPEC 5), each read against the run's own noise: over the last fifth of
  its epochs the log loss is fitted by a line, whose standard error comes from the
  residuals with the number of points shrunk for their lag-1 autocorrelation. A run is
  *converged* only when it is shown flat: an equivalence test (two one-sided tests at
  {convergence.TREND_ALPHA:g}) puts its change over the fifth within
  ±{pct(convergence.RELEVANT_CHANGE)}; *still falling* when the slope is negative at
  one-sided p < {convergence.TREND_ALPHA:g} and the fitted fall exceeds
  {pct(convergence.RELEVANT_CHANGE)}; *rising* likewise upwards; *undetermined* when
  neither can be shown (too few epochs or too much noise); *unstable* when the residual
  sd of the log loss exceeds {convergence.UNSTABLE_NOISE:g}. On the whole path: *on the
  plateau* when its final loss is within {pct(convergence.PLATEAU_WITHIN)} of the constant
  predictor's and no epoch was ever {pct(1 - convergence.LEFT_PLATEAU)} below it;
  *collapsed* when it ends there after having been below (it left the plateau and came
  back); *exploded* when its final loss exceeds {convergence.EXPLODED_TIMES:g} times the
  constant predictor's. Collapsed, exploded and diverged runs are failures. A
  configuration is in a state when more than half of its runs are, else *mixed* (the
  counts are shown), which is never read as converged.
- **What a claim can decide** (the verdict's qualifier), from the configurations its test
  contrasts (the two arms; an interaction's four cells; a trend's levels; an optimum's
  edges and chosen best levels), never others. A verdict on a final error is void (*not
  converged*, inconclusive whatever its p) only when more training could undo it: the
  claim's own estimate, followed at 80, 85, 90, 95 and 100% of every run's budget and
  carried on at its least-squares rate for another budget, would lose its sign (or leave
  or enter a same-claim's margin), and a contrasted configuration may still move (at
  least {pct(convergence.MOVING_SHARE)} of its runs not shown converged: falling, rising or
  undetermined). An effect that is
  stable or growing while both arms still fall is decided (a *stable effect*); identical
  arms are never void. Where some contrasted configurations end the budget on the
  plateau (never left it, or collapsed back), the verdict stands but is *about leaving
  the plateau* within the budget. A landscape probe (the loss's variation along the
  gradient) is *not testable* where most runs of a compared configuration sit on the
  plateau: there the gradient vanishes, and the landscape looks flat by being stuck. Measures over
  the course of training (probes, gradient spread) and of one network evaluated two ways
  (precise BN's gap) are only qualified by a plateau (*measured on the plateau*); epochs
  to a threshold are *about speed*.
- **Convergence** (the sweep tables): epochs until the train MSE first falls to T,
  {THRESHOLD_FRACTION:g} x the constant predictor's train MSE (R² = {1 - THRESHOLD_FRACTION:g}
  on train, fixed per data set whatever the sweep holds); the median is shown, with how
  many runs got there.
- **Diverged runs** (non-finite loss) are counted in every table and figure note. In a
  claim on a final loss or accuracy a diverged run is a failure, not a missing value: it
  gets the worst value of the sweep (at least the constant predictor's), so that a partly
  diverged arm is not judged by its lucky survivors. Elsewhere (probes, gradients) a
  pair with a diverged run is dropped; for epochs to a threshold a diverged run never
  reaches it.
- **Error figures** share their y axis within a grid, draw the constant predictor as a
  dotted line, and clip the axis at {CAP_TIMES}x that error (saying so) so that a diverging
  curve does not flatten the others.
"""


def _counts_line(sw: PreparedSweep) -> str:
    n_div = int(sw.runs["diverged"].sum())
    line = f"Runs: {len(sw.runs)}, diverged: {n_div}."
    if REGRESSION in sw.tasks:
        line += (
            f" Threshold T = {cell(sw.threshold)} (train MSE; half the constant predictor's, "
            "R² = 0.5 on train)."
        )
    if CLASSIFICATION in sw.tasks:
        n = int((sw.runs["task"] == CLASSIFICATION).sum())
        line += (
            f" Classification runs: {n} (cross-entropy; accuracy is the share of test rows "
            "whose largest logit is their class)."
        )
    return line


def _state_cell(s) -> str:
    change = s.get("last_fifth_change_median", math.nan)
    change = f"{100 * math.expm1(change):+.0f}%" if math.isfinite(change) else "—"
    state = s.get("state", "")
    return f"{change} ({state})" if state and state != convergence.CONVERGED else change


def _ci(s, metric: str, center: str) -> str:
    """`center` of `metric` with its 95% interval, from a summary row."""
    return (
        f"{cell(s[f'{metric}_{center}'])} [{cell(s[f'{metric}_ci_low'])}, "
        f"{cell(s[f'{metric}_ci_high'])}]"
    )


def _config_table(sw: PreparedSweep, summary: pd.DataFrame, configs: Sequence[int], columns):
    """One row per configuration: its axes, its counts, then `columns` ((header, function
    of the summary row) pairs), and the dead units where the sweep has any."""
    has_dead = np.isfinite(summary["dead_fraction_final_mean"]).any()
    header = [*sw.axes, "n", "diverged", *(h for h, _ in columns)]
    header += ["dead units (mean)"] if has_dead else []
    rows = []
    for i in configs:
        cfg, s = sw.configs[i], summary.iloc[i]
        row = [*(show(cfg[k]) for k in sw.axes), s.n_seeds]
        row.append(f"**{s.n_diverged}**" if s.n_diverged else "0")
        row += [f(s) for _, f in columns]
        rows.append(row + ([s.dead_fraction_final_mean] if has_dead else []))
    return md_table(header, rows)


def _regression_table(sw: PreparedSweep, summary: pd.DataFrame, configs: Sequence[int]) -> str:
    def epochs_to(s) -> str:
        n_ok = s.n_seeds - s.n_diverged
        med = s.epochs_to_threshold_median
        med = f"> {sw.epochs}" if med > sw.epochs else cell(med)
        return f"{med} ({int(s.n_reached)}/{n_ok})" if n_ok and math.isfinite(sw.threshold) else "—"

    def r2(s) -> str:
        return f"{s.r2_median:.2f}" if math.isfinite(s.get("r2_median", math.nan)) else "—"

    columns = [
        ("final test MSE geo-mean [95% CI]", lambda s: _ci(s, "final_test_mse", "geomean")),
        ("R² median", r2),
        ("constant predictor", lambda s: s.get("baseline_test_mse", math.nan)),
        ("last fifth: change (state)", _state_cell),
        ("epochs to R²=0.5 on train: median (reached/n)", epochs_to),
    ]
    return _config_table(sw, summary, configs, columns)


def _classification_table(sw: PreparedSweep, summary: pd.DataFrame, configs: Sequence[int]) -> str:
    columns = [
        ("final test accuracy mean [95% CI]", lambda s: _ci(s, "final_test_accuracy", "mean")),
        ("final test accuracy median", lambda s: s.final_test_accuracy_median),
        (
            "majority class (constant predictor)",
            lambda s: s.get("baseline_test_accuracy", math.nan),
        ),
        ("final test CE geo-mean", lambda s: s.final_test_ce_geomean),
        ("last fifth: CE change (state)", _state_cell),
    ]
    return _config_table(sw, summary, configs, columns)


def _missing_curves(sw: PreparedSweep, figures: Sequence[str]) -> list[str]:
    lines = []
    if REGRESSION in sw.tasks and not any("_test_curves" in name for name in figures):
        lines += ["No test-MSE curves to draw: history.csv has no finite per-epoch test MSE.", ""]
    if CLASSIFICATION in sw.tasks and not any("_test_accuracy_curves" in n for n in figures):
        lines += ["No test-accuracy curves to draw: history.csv has no finite test accuracy.", ""]
    return lines


def sweep_markdown(
    sw: PreparedSweep, summary: pd.DataFrame, figures: Sequence[str], claim_ids: Sequence[str]
) -> str:
    """A sweep's section: what it is, its figures, and a table per task it holds."""
    seeds = ", ".join(map(show, sw.seeds))
    axes = "; ".join(f"{k} ∈ {{{', '.join(map(show, v))}}}" for k, v in sw.axes.items())
    fixed = ", ".join(f"{k}={show(v)}" for k, v in sw.fixed.items())
    lines = [f"## Sweep `{sw.name}`", ""]
    if sw.name in COURSE:
        lines += [COURSE[sw.name], ""]
    lines += [
        f"Axes: {axes or 'none'}. Fixed: {fixed}. Seeds ({len(sw.seeds)}): {seeds}.",
        _counts_line(sw),
    ]
    if claim_ids:
        lines.append("Claims judged on this sweep: " + ", ".join(claim_ids) + ".")
    if len(sw.configs) > MAX_PANELS:
        lines.append(f"Figures show the first {MAX_PANELS} panels; the table lists all.")
    lines.append("")
    lines += _missing_curves(sw, figures)
    for name in figures:
        lines += [f"![{name[:-4]}](figures/{name})", ""]
    summary = summary.reset_index(drop=True)
    tables = {REGRESSION: _regression_table, CLASSIFICATION: _classification_table}
    for task in sw.tasks:
        configs = [i for i in range(len(sw.configs)) if sw.config_task(i) == task]
        lines += [tables[task](sw, summary, configs), ""]
    return "\n".join(lines)
