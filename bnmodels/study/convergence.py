"""Where a run stands at the end of its budget, read against its own noise, and what that
lets a claim on the sweep decide.

A final error compares methods only where both arms have finished learning; a run on the
initial plateau (no better than predicting the train labels' mean, SPEC 5's `baseline_*`
columns) has not started. Each run's state is a test on the run itself (SPEC 5):

- *trend over the last fifth*: the least-squares line of the log loss against the epoch
  over the last fifth of the run's own epochs (at least 4 points). Its change over that
  fifth is the fitted slope times the span; its standard error comes from the residuals,
  with the effective number of points shrunk for their lag-1 autocorrelation
  (n (1 - r) / (1 + r), r corrected for its small-sample bias), since an SGD curve's
  epoch-to-epoch noise is not independent.
- *converged*: shown flat, not merely not shown moving: the equivalence test (two one-sided
  tests at TREND_ALPHA each, against that noise) puts the change over the fifth within
  +-5% (RELEVANT_CHANGE). A run that is neither shown flat nor shown moving is
  *undetermined*: its trend test lacks the power to say either.
- *still falling*: the slope is negative at one-sided p < 0.025 against that noise AND the
  fitted fall over the fifth exceeds 5% (smaller falls are converged for any purpose here).
- *rising*: the same test, positive: the loss is getting worse at the end of the budget.
- *unstable*: the residual standard deviation of the log loss exceeds 0.5 (epoch-to-epoch
  swings of more than about +-65%): the noise swamps the level, no trend can be read.
- *plateau*, read on the whole path: the final loss within 5% of the constant predictor's,
  either side (|R^2| <= 0.05 on test; for classification, test cross-entropy within 5% of
  that of the train class frequencies), and no epoch ever 10% below it (LEFT_PLATEAU).
- *collapsed*: the final loss back within 5% of the constant predictor's after some epoch
  had been 10% or more below it: the run left the plateau and came back (dying ReLUs).
- *exploded*: the final loss above 1e6 times the constant predictor's (EXPLODED_TIMES).
- *diverged*: a non-finite loss.

Exploded, collapsed and diverged runs are failures (`FAILED`): counted as such wherever
a claim reports its runs.

A configuration's state comes from the shares of its runs in each state: the state of
more than half of them, else *mixed* (with the shares), and mixed is never read as
converged. What voids a claim is decided by the claim's own effect (study/guard.py), not
by these labels alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from bnmodels import columns

CONVERGED, FALLING, PLATEAU, DIVERGED = "converged", "still falling", "on the plateau", "diverged"
RISING, UNSTABLE, MIXED = "rising", "unstable", "mixed"
UNDETERMINED, COLLAPSED, EXPLODED = "undetermined", "collapsed", "exploded"
STATES = (
    CONVERGED,
    UNDETERMINED,
    FALLING,
    RISING,
    UNSTABLE,
    PLATEAU,
    COLLAPSED,
    EXPLODED,
    DIVERGED,
)
FAILED = (COLLAPSED, EXPLODED, DIVERGED)  # failures of training, counted as such
NOT_SHOWN_STILL = (UNDETERMINED, FALLING, RISING)  # may still move: not shown converged
TREND_ALPHA = 0.025  # one-sided level of each of a run's two slope tests (falling, rising)
RELEVANT_CHANGE = 0.05  # fitted change over the last fifth (as a fraction) that matters
UNSTABLE_NOISE = 0.5  # residual sd of the log loss above which the noise swamps the level
PLATEAU_WITHIN = 0.05  # final loss within this fraction of the constant predictor's
LEFT_PLATEAU = 0.9  # an epoch at or below this fraction of it: the run left the plateau
EXPLODED_TIMES = 1e6  # a final loss above this multiple of the constant predictor's
LAST_FIFTH = 0.2
MIN_POINTS = 4
# The loss a run's state is read from, and its constant-predictor column (runs.csv).
LOSS = {task: (col, f"baseline_{col}") for task, col in columns.TEST_LOSS.items()}

# Scopes of a claim: what its runs let it decide.
DECIDED, SPEED, TRAINABILITY, UNDECIDED = (
    "converged",
    "speed",
    "leaving the plateau",
    "not converged",
)
ON_PLATEAU = "measured on the plateau"  # a measure over training; some arm never trained
STABLE = "stable effect"  # decided, though some contrasted runs are not shown converged


@dataclass(frozen=True)
class Trend:
    """Per run: the fitted log change over the last fifth, its one-sided p values, and the
    residual noise (sd of the log loss about the line)."""

    change: np.ndarray
    p_falling: np.ndarray
    p_rising: np.ndarray
    noise: np.ndarray
    p_within: np.ndarray  # the equivalence test's: the change lies within +-RELEVANT_CHANGE


def _fit(y: np.ndarray) -> tuple[float, float, float, float, float]:
    """(change over the span, p of a fall, p of a rise, residual sd, p of a change within
    +-RELEVANT_CHANGE) of one log curve."""
    y = y[np.isfinite(y)]
    n = len(y)
    if n < MIN_POINTS:
        return math.nan, math.nan, math.nan, math.nan, math.nan
    x = np.arange(n, dtype=float)
    x -= x.mean()
    sxx = float(x @ x)
    slope = float(x @ (y - y.mean())) / sxx
    resid = y - y.mean() - slope * x
    sd = float(np.sqrt(resid @ resid / (n - 2)))
    change = slope * (n - 1)
    lo, hi = math.log1p(-RELEVANT_CHANGE), math.log1p(RELEVANT_CHANGE)
    if sd == 0:
        p = 0.0 if slope != 0 else 1.0
        within = 0.0 if lo < change < hi else 1.0
        return change, p if slope < 0 else 1.0, p if slope > 0 else 1.0, 0.0, within
    r = float(resid[1:] @ resid[:-1] / (resid @ resid)) if n > 2 else 0.0
    r = min(0.95, r + (1 + 3 * r) / n)  # the estimate's small-sample bias (Marriott-Pope)
    n_eff = min(n, max(3.0, n * (1 - r) / (1 + r)))
    se = sd / math.sqrt(sxx) * math.sqrt(n / n_eff)
    tstat = slope / se
    df = max(1.0, n_eff - 2)
    se_change = se * (n - 1)
    # two one-sided tests: the change is above lo, and below hi
    within = max(sps.t.sf((change - lo) / se_change, df), sps.t.cdf((change - hi) / se_change, df))
    return change, float(sps.t.cdf(tstat, df)), float(sps.t.sf(tstat, df)), sd, float(within)


def last_fifth_trend(curves: np.ndarray, lengths=None) -> Trend:
    """The trend over the last fifth of each row of (runs, epochs) positive losses, each
    run read up to its own number of epochs (`lengths`, a steps budget) where given."""
    c = np.atleast_2d(np.asarray(curves, dtype=float))
    own = np.full(c.shape[0], c.shape[1]) if lengths is None else np.asarray(lengths, int)
    out = np.full((5, c.shape[0]), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        logs = np.log(c)
    for i, epochs in enumerate(own):
        cut = min(int(round((1 - LAST_FIFTH) * epochs)), epochs - MIN_POINTS)
        if cut >= 0:
            out[:, i] = _fit(logs[i, cut:epochs])
    return Trend(*out)


def last_fifth_change(curves: np.ndarray, lengths=None) -> np.ndarray:
    """The fitted log change of each run over the last fifth of its epochs."""
    return last_fifth_trend(curves, lengths).change


def states_of(trend: Trend, ratio: np.ndarray, lowest: np.ndarray | None = None) -> np.ndarray:
    """Each run's state from its trend, its final loss over the constant predictor's
    (`ratio`) and the lowest such ratio along its path (`lowest`; without it, the final
    one: a run then cannot be told to have left the plateau)."""
    lowest = ratio if lowest is None else np.asarray(lowest, dtype=float)
    with np.errstate(invalid="ignore"):
        exploded = ratio > EXPLODED_TIMES
        near = np.abs(ratio - 1) <= PLATEAU_WITHIN  # False where the baseline is unknown
        left = lowest <= LEFT_PLATEAU
        unstable = trend.noise > UNSTABLE_NOISE
        falling = (trend.p_falling < TREND_ALPHA) & (trend.change < math.log1p(-RELEVANT_CHANGE))
        rising = (trend.p_rising < TREND_ALPHA) & (trend.change > math.log1p(RELEVANT_CHANGE))
        flat = trend.p_within < TREND_ALPHA
    return np.select(
        [exploded, near & left, near, unstable, falling, rising, flat],
        [EXPLODED, COLLAPSED, PLATEAU, UNSTABLE, FALLING, RISING, CONVERGED],
        UNDETERMINED,
    )


def run_states(runs: pd.DataFrame, curves: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per run (runs' index): the loss's change over the last fifth, the test R^2 for
    regression (1 - final test MSE / the constant predictor's), and the run's state."""
    out = pd.DataFrame(
        {"last_fifth_change": math.nan, "r2": math.nan, "state": CONVERGED}, index=runs.index
    )
    for task, (loss, base_col) in LOSS.items():
        mine = (runs["task"] == task).to_numpy()
        if not mine.any() or loss not in curves:
            continue
        c = curves[loss].to_numpy(float)[mine]
        own = runs.loc[mine, "epochs"].to_numpy(int) if "epochs" in runs else None
        own = np.full(len(c), c.shape[1]) if own is None else np.minimum(own, c.shape[1])
        trend = last_fifth_trend(c, own)
        final = c[np.arange(len(c)), own - 1] if c.shape[1] else np.full(len(c), np.nan)
        base = runs.loc[mine, base_col].to_numpy(float) if base_col in runs else np.nan
        within = np.arange(c.shape[1])[None, :] < own[:, None]  # each run's own epochs
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = final / base
            path = np.where(within & np.isfinite(c), c, np.inf)
            lowest = path.min(axis=1, initial=np.inf) / base
        state = states_of(trend, ratio, lowest)
        out.loc[mine, "last_fifth_change"] = trend.change
        if task == "regression":
            out.loc[mine, "r2"] = 1 - ratio
        out.loc[mine, "state"] = state
    out.loc[runs["diverged"].to_numpy(bool), "state"] = DIVERGED
    return out


@dataclass(frozen=True)
class Scope:
    """What a claim's runs let it decide, and the sentence that says so."""

    kind: str  # DECIDED, SPEED, TRAINABILITY or UNDECIDED
    note: str  # empty when converged

    @property
    def decides(self) -> bool:
        return self.kind != UNDECIDED

    @property
    def final_error(self) -> bool:
        """Whether the verdict is about the error reached (both arms trained)."""
        return self.kind in (DECIDED, STABLE)


def _describe(cfgs: pd.DataFrame, keys) -> str:
    def one(idx) -> str:
        vals = idx if isinstance(idx, tuple) else (idx,)
        return ", ".join(f"{k}={_show(v)}" for k, v in zip(keys, vals, strict=True))

    shown = [one(i) for i in cfgs.index[:4]]
    more = len(cfgs) - len(shown)
    return "; ".join(shown) + (f" and {more} more" if more > 0 else "")


def _plateau_shares(cfgs: pd.DataFrame) -> str:
    """Per configuration: the share of its runs that never left the plateau, and of those
    that left it and came back ('70%; 30% collapsed')."""
    parts = []
    for _, row in cfgs.iloc[:4].iterrows():
        part = f"{100 * row[PLATEAU]:.0f}%"
        if row[COLLAPSED] > 0:
            part += f" + {100 * row[COLLAPSED]:.0f}% collapsed"
        parts.append(part)
    return ", ".join(parts)


def _show(v) -> str:
    return f"{float(v):g}" if isinstance(v, float | np.floating) else str(v)


def config_states(runs: pd.DataFrame, keys) -> pd.DataFrame:
    """Per configuration (the `keys` columns): the share of runs in each state, and its
    state: that of more than half of its runs, else 'mixed'."""
    g = runs.groupby(list(keys), sort=False)["state"]
    shares = g.value_counts(normalize=True).unstack(fill_value=0.0)
    for s in STATES:
        if s not in shares:
            shares[s] = 0.0
    shares = shares[list(STATES)]
    shares["majority"] = [
        next((s for s, v in row.items() if v > 0.5), MIXED) for _, row in shares.iterrows()
    ]
    return shares


def state_words(states: pd.Series) -> str:
    """A configuration's state in words: the majority state, or 'mixed (5 still falling,
    3 on the plateau, 2 converged)'."""
    counts = states.value_counts()
    if not len(counts):
        return ""
    if counts.iloc[0] > len(states) / 2:
        return str(counts.index[0])
    return MIXED + " (" + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")"


# The claim's effect is followed over the last fifth of the budget at these fractions of
# each run's own epochs, and carried on at its rate for HORIZON more budgets.
PATH = (0.8, 0.85, 0.9, 0.95, 1.0)
HORIZON = 1.0
MOVING_SHARE = 0.3  # a configuration still moves when this share of its runs falls or rises


@dataclass(frozen=True)
class Movement:
    """What the guard needs of a claim: its verdict, direction, margin (on its scale; 0
    when it has none) and its estimate at each point of PATH (empty: no path)."""

    verdict: str
    expect: str
    margin: float
    path: np.ndarray


def projected(path: np.ndarray) -> float:
    """The estimate carried on for HORIZON budgets at its least-squares rate over PATH."""
    x, y = np.asarray(PATH), np.asarray(path, dtype=float)
    ok = np.isfinite(y)
    if ok.sum() < 3:
        return math.nan
    slope = np.polyfit(x[ok], y[ok], 1)[0]
    return float(y[-1] + slope * HORIZON) if math.isfinite(y[-1]) else math.nan


def could_change(m: Movement) -> bool:
    """Whether more training at the effect's present rate would undo the verdict: lose a
    supported effect's sign (or leave a same-claim's margin), or bring a refuted one back
    (to the expected sign, or inside the margin). Inconclusive verdicts have nothing to
    undo."""
    if len(m.path) == 0 or m.verdict not in ("supported", "not supported"):
        return False
    end, ahead = float(m.path[-1]), projected(m.path)
    if not (math.isfinite(end) and math.isfinite(ahead)):
        return False
    if m.expect == "same":
        if m.verdict == "supported":
            return abs(ahead) >= m.margin
        # refuted: back inside the margin anywhere on the way (it may pass through 0)
        nearest = 0.0 if end * ahead <= 0 else min(abs(end), abs(ahead))
        return nearest < m.margin
    want = -1.0 if m.expect == "lower" else 1.0  # optimum: "higher" (edges worse)
    if m.verdict == "supported":
        return ahead * want <= 0
    return ahead * want > 0


def scope(
    runs: pd.DataFrame,
    keys,
    budget: str,
    speed: bool,
    mechanism: bool,
    movement: Movement | None = None,
    flat_measure: bool = False,
) -> Scope:
    """The scope of a claim over the runs its test contrasts (`runs` with a `state`
    column), configurations told apart by `keys`.

    `speed`: the claim's metric is a time (epochs to a threshold), which runs still
    learning do not invalidate. `mechanism`: a measure over the course of training (a
    probe, a gradient spread) or of one network evaluated two ways (precise BN's gap),
    where only a plateau changes what it means. `movement`: the claim's effect over the
    last fifth; the verdict is void only where it `could_change` and some contrasted
    configuration still moves (MOVING_SHARE of its runs not shown converged).
    `flat_measure`: a measure along the gradient (the landscape probes), which a plateau
    makes trivially small: not testable where most runs of a configuration sit on one.
    """
    if speed:
        return Scope(SPEED, "a claim about speed (epochs to a threshold)")
    keys = [k for k in keys if runs[k].nunique() > 1] or [keys[0]]
    states = config_states(runs, keys)
    stuck = states[PLATEAU] + states[COLLAPSED]  # on the plateau at the end of the budget
    if flat_measure and (stuck > 0.5).any():
        return Scope(
            UNDECIDED,
            f"not testable here: most runs of {_describe(states[stuck > 0.5], keys)} end the "
            f"{budget} on the constant predictor's plateau, where the gradient, and with it "
            "the loss's variation along it, vanishes: flat by being stuck, not smooth",
        )
    plateau = states[stuck >= MOVING_SHARE]  # a mixed one too: 5 of 10 on it
    moving = states[states[list(NOT_SHOWN_STILL)].sum(axis=1) >= MOVING_SHARE]
    if (stuck > 0.5).all():
        return Scope(
            UNDECIDED,
            f"every compared configuration ends its {budget} on the constant predictor's "
            "plateau: nothing trained, nothing compared",
        )
    if not mechanism and movement is not None and len(moving) and could_change(movement):
        path = ", ".join(f"{v:+.2f}" for v in movement.path)
        return Scope(
            UNDECIDED,
            f"not decided: the effect moved ({path} on its scale at 80% to 100% of the "
            f"{budget}) while runs were not shown converged in {_describe(moving, keys)}; "
            f"at that rate another {budget} would undo the verdict",
        )
    if len(plateau):
        what = "measured on a flat plateau" if mechanism else "about leaving the plateau"
        return Scope(
            ON_PLATEAU if mechanism else TRAINABILITY,
            f"{_describe(plateau, keys)} end the {budget} on the constant predictor's plateau "
            f"({_plateau_shares(plateau)} of their runs: never 10% below its loss, or "
            f"collapsed: below it, then back): the comparison is {what} within the budget, "
            "not about the error reached at convergence",
        )
    if not mechanism and len(moving):
        return Scope(
            STABLE,
            f"runs are not shown converged at the end of the {budget} in "
            f"{_describe(moving, keys)} (still moving, or too noisy to tell), but the effect "
            "would keep its verdict at its present rate for another budget",
        )
    return Scope(DECIDED, "")
