"""The `claims` section of params.yaml: one frozen `Claim` per entry, validated completely.

A claim states what a sweep should show, in four shapes (`kind`):

- `pair` (the default): runs with `compare` against otherwise equal runs with `against`,
  paired by seed, restricted to `where`; other axes are averaged within each seed first.
- `trend`: that pair's effect against a numeric axis `along` (per-seed slope).
- `interaction`: that pair's effect in `group` minus its effect in `than`.
- `optimum`: the metric against a numeric axis `along` has an interior minimum (or
  maximum): both edge levels are worse than the best level in between.

`expect` is `lower`, `higher` or `same` (within `margin`), or for an optimum `minimum` or
`maximum`. Validation needs each sweep's values per configuration key (`sweep_values`),
so it runs where the sweeps are known: in config.validate (the plan stage, before any
training) and in the aggregate stage against the plans it reports on. Errors go to the
caller's collector (`add(path, value, allowed)`, `raw(path, message)`), one per problem.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bnmodels.study.metrics import GRAMMAR, Metric, parse_metric

PAIR, TREND, INTERACTION, OPTIMUM = "pair", "trend", "interaction", "optimum"
KINDS = (PAIR, TREND, INTERACTION, OPTIMUM)
LOWER, HIGHER, SAME, MINIMUM, MAXIMUM = "lower", "higher", "same", "minimum", "maximum"
BEST = "best"  # an arm value: the axis level with the best metric, chosen on the other seeds
COMMON_KEYS = (
    "kind",
    "says",
    "source",
    "hint",
    "question",
    "primary",
    "sweep",
    "where",
    "metric",
    "threshold",
    "expect",
    "margin",
)
KIND_KEYS = {
    PAIR: ("compare", "against"),
    TREND: ("compare", "against", "along"),
    INTERACTION: ("compare", "against", "group", "than"),
    OPTIMUM: ("along",),
}
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")

Filter = tuple[tuple[str, tuple[Any, ...]], ...]  # ((key, values), ...) in file order
SweepValues = Mapping[str, Mapping[str, tuple]]  # sweep -> configuration key -> its values


class Errors(Protocol):
    def add(self, path: str, value: Any, allowed: str) -> None: ...
    def raw(self, path: str, message: str) -> None: ...


class Problems(list):
    """An `Errors` collector that keeps each problem as a line (for callers that build
    claims themselves: the calibration, tests)."""

    def add(self, path: str, value: Any, allowed: str) -> None:
        self.append(f"{path}: {value!r}; expected {allowed}")

    def raw(self, path: str, message: str) -> None:
        self.append(f"{path}: {message}")


@dataclass(frozen=True)
class Threshold:
    """Where `epochs_to_<column>` stops the clock: an absolute value, a fraction of the
    sweep's median first-epoch value of the column, or a fraction of the constant
    predictor's value on the run's data (`baseline_<column>` of runs.csv: fixed per data
    set, whatever else the sweep holds)."""

    value: float = math.nan
    start_fraction: float = math.nan
    baseline_fraction: float = math.nan


@dataclass(frozen=True)
class Claim:
    """One claim of the `claims` section, as validated."""

    id: str
    kind: str
    says: str
    sweep: str
    metric: Metric
    expect: str
    source: str = ""
    hint: str = ""  # shown when the claim is not supported: a variant worth trying
    # the question it asks, shared by the claims that ask it on other data ("Does it
    # transfer?": one row per question, one column per data set)
    question: str = ""
    # a claim of the notes, fixed before the data: the primary family of Holm's correction;
    # the others are exploratory, corrected as their own family and shown apart
    primary: bool = False
    where: Filter = ()
    compare: Filter = ()
    against: Filter = ()
    along: str = ""
    group: Filter = ()
    than: Filter = ()
    margin: float = 0.0  # for `same`: relative (0.25 = within 25%) on the log scale
    threshold: Threshold = Threshold()


def as_dict(f: Filter) -> dict[str, tuple]:
    return dict(f)


def sweep_values(runs: Sequence[Mapping[str, Any]]) -> dict[str, tuple]:
    """Each configuration key's values among `runs` (seed aside: it pairs runs, it does not
    select them), in order of first appearance."""
    keys = list(runs[0]) if runs else []
    return {k: tuple(dict.fromkeys(r[k] for r in runs)) for k in keys if k != "seed"}


def _show(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _is_num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _text(d: dict, key: str, path: str, err: Errors, required: bool) -> str:
    if key not in d:
        if required:
            err.raw(f"{path}.{key}", "missing key")
        return ""
    if not isinstance(d[key], str) or not d[key].strip():
        err.add(f"{path}.{key}", d[key], "a non-empty text")
        return ""
    return d[key].strip()


def _filter(
    raw,
    path: str,
    values: Mapping[str, tuple] | None,
    sweep: str,
    err: Errors,
    allow_best: bool = False,
) -> Filter | None:
    """A mapping of configuration keys to a value or a list of values the sweep has."""
    if not isinstance(raw, dict) or not raw:
        err.add(path, raw, "a mapping of configuration keys to a value or a list of values")
        return None
    if values is None:  # the sweep is unknown or invalid: reported elsewhere
        return None
    out, ok = [], True
    for k, v in raw.items():
        if k not in values:
            err.raw(f"{path}.{k}", "unknown key; expected one of " + ", ".join(values))
            ok = False
            continue
        if allow_best and v == BEST:
            if len(values[k]) < 2:
                err.add(f"{path}.{k}", v, f"a value of sweep {sweep} ({k} is not an axis of it)")
                ok = False
            out.append((k, (BEST,)))
            continue
        items = v if isinstance(v, list) else [v]
        if not items:
            err.add(f"{path}.{k}", v, "a value or a non-empty list of values")
            ok = False
        for i, x in enumerate(items):
            if isinstance(x, bool) or isinstance(x, list | dict) or x not in values[k]:
                at = f"{path}.{k}[{i}]" if isinstance(v, list) else f"{path}.{k}"
                shown = ", ".join(map(_show, values[k]))
                err.add(at, x, f"one of {shown} (the values of sweep {sweep})")
                ok = False
        out.append((k, tuple(dict.fromkeys(items))))
    return tuple(out) if ok else None


def _shares(a: Filter, b: Filter) -> bool:
    """Whether some run satisfies both filters (the sweep is a Cartesian product); `best`
    may be any level."""
    bd = as_dict(b)
    return all(BEST in vs or k not in bd or BEST in bd[k] or set(vs) & set(bd[k]) for k, vs in a)


def _overlap(a: Filter, b: Filter) -> bool:
    """Whether two arms setting the same keys select a common run. An arm at the `best`
    level may meet the other arm's level for some seed: that is a zero effect, not an
    overlap of the arms as written."""
    bd = as_dict(b)
    return all(BEST not in vs and BEST not in bd[k] and set(vs) & set(bd[k]) for k, vs in a)


class _Counted:
    """Forwards to the caller's collector, counting, so that a claim with a problem is
    not built."""

    def __init__(self, err: Errors):
        self.err, self.n = err, 0

    def add(self, path: str, value: Any, allowed: str) -> None:
        self.n += 1
        self.err.add(path, value, allowed)

    def raw(self, path: str, message: str) -> None:
        self.n += 1
        self.err.raw(path, message)


def _check_arms(
    p: str, names: tuple[str, str], arms: tuple[Filter, Filter], where: Filter, err: Errors
) -> bool:
    """Two arms: each selects runs within `where`, they set the same keys, and no run is in
    both."""
    ok = True
    for name, arm in zip(names, arms, strict=True):
        if not _shares(arm, where):
            err.raw(f"{p}.{name}", "selects no runs: it shares no value with `where`")
            ok = False
    a, b = arms
    if set(as_dict(a)) != set(as_dict(b)):
        err.raw(
            f"{p}.{names[1]}",
            f"sets {', '.join(as_dict(b))} but {names[0]} sets {', '.join(as_dict(a))}; "
            "expected the same keys (otherwise equal runs are compared)",
        )
        return False
    if ok and _overlap(a, b):
        err.raw(
            f"{p}.{names[1]}",
            f"selects runs that {names[0]} also selects; expected arms that differ in "
            "a key with no shared value",
        )
        return False
    return ok


def _along(
    d: dict, p: str, values: Mapping[str, tuple] | None, kind: str, err: Errors, used: Iterable[str]
) -> str:
    v = d.get("along")
    if values is None or v is None:
        if v is None:
            err.raw(f"{p}.along", "missing key")
        return ""
    need = 3 if kind == OPTIMUM else 2
    axes = [k for k, vs in values.items() if len(vs) >= need and all(map(_is_num, vs))]
    if v not in axes:
        err.add(
            f"{p}.along",
            v,
            f"an axis of at least {need} numbers of this sweep: {', '.join(axes) or 'none'}",
        )
        return ""
    if v in used:
        err.add(f"{p}.along", v, "an axis that no filter of the claim sets")
        return ""
    return v


def _metric(d: dict, p: str, kind: str, err: Errors) -> tuple[Metric | None, Threshold]:
    if "metric" not in d:
        err.raw(f"{p}.metric", "missing key")
        return None, Threshold()
    metric = parse_metric(d["metric"])
    if metric is None:
        err.add(f"{p}.metric", d["metric"], GRAMMAR)
        return None, Threshold()
    if kind == OPTIMUM and metric.censored:
        err.add(
            f"{p}.metric",
            d["metric"],
            "a metric with a value for every run (an optimum of censored epochs is not defined)",
        )
    t = d.get("threshold")
    if not metric.censored:
        if t is not None:
            err.raw(f"{p}.threshold", "unused: only epochs_to_<column> metrics take a threshold")
        return metric, Threshold()
    if _is_num(t):
        return metric, Threshold(value=float(t))
    if (
        isinstance(t, dict)
        and len(t) == 1
        and list(t)[0] in ("start_fraction", "baseline_fraction")
        and _is_num(list(t.values())[0])
        and list(t.values())[0] > 0
    ):
        return metric, Threshold(**{k: float(v) for k, v in t.items()})
    if t is None:
        err.raw(f"{p}.threshold", "missing key (epochs_to_<column> needs a threshold)")
    else:
        err.add(
            f"{p}.threshold",
            t,
            "a number, {baseline_fraction: f} (f > 0 times the constant predictor's value on "
            "the run's data) or {start_fraction: f} (f times the sweep's median first-epoch "
            "value)",
        )
    return metric, Threshold()


def _expect(d: dict, p: str, kind: str, err: Errors) -> tuple[str, float]:
    allowed = (MINIMUM, MAXIMUM) if kind == OPTIMUM else (LOWER, HIGHER, SAME)
    e = d.get("expect")
    if e is None:
        err.raw(f"{p}.expect", "missing key")
    elif e not in allowed:
        err.add(f"{p}.expect", e, "one of " + ", ".join(allowed))
    m = d.get("margin")
    if e == SAME and m is None:
        err.raw(f"{p}.margin", "missing key (expect: same needs an equivalence margin)")
    elif m is not None and e != SAME:
        err.raw(f"{p}.margin", "unused: only expect: same takes a margin")
    elif m is not None and not (_is_num(m) and m > 0):
        err.add(f"{p}.margin", m, "a finite number > 0")
        m = None
    return (e if e in allowed else ""), float(m or 0.0)


def _primary(d: Mapping, p: str, err: Errors) -> bool:
    """`primary: true`: a claim of the notes, fixed before the data (its Holm family)."""
    primary = d.get("primary", False)
    if not isinstance(primary, bool):
        err.add(f"{p}.primary", primary, "true or false")
    return primary is True


def _claim(cid: str, d: Any, sweeps: SweepValues, known: set[str], err: _Counted) -> Claim | None:
    p = f"claims.{cid}"
    if not isinstance(d, dict):
        err.add(p, d, "a mapping with says, sweep, metric, expect and the keys of its kind")
        return None
    n0 = err.n
    kind = d.get("kind", PAIR)
    if kind not in KINDS:
        err.add(f"{p}.kind", kind, "one of " + ", ".join(KINDS))
        return None
    for k in d:
        if k not in (*COMMON_KEYS, *KIND_KEYS[kind]):
            err.raw(
                f"{p}.{k}",
                f"unknown key; expected one of {', '.join((*COMMON_KEYS, *KIND_KEYS[kind]))}",
            )
    for k in KIND_KEYS[kind]:
        if k not in d and k != "along":
            err.raw(f"{p}.{k}", "missing key")
    says, source, hint, question = (
        _text(d, k, p, err, k == "says") for k in ("says", "source", "hint", "question")
    )
    primary = _primary(d, p, err)
    sweep = d.get("sweep")
    values = sweeps.get(sweep) if isinstance(sweep, str) else None
    if sweep is None:
        err.raw(f"{p}.sweep", "missing key")
    elif values is None and (not isinstance(sweep, str) or sweep not in known):
        err.add(f"{p}.sweep", sweep, "a sweep defined under sweeps: " + ", ".join(sorted(known)))
    metric, threshold = _metric(d, p, kind, err)
    expect, margin = _expect(d, p, kind, err)
    filters = {}
    for k in ("where", "compare", "against", "group", "than"):
        if k in d and k in (*COMMON_KEYS, *KIND_KEYS[kind]):
            filters[k] = _filter(
                d[k], f"{p}.{k}", values, sweep, err, allow_best=k in ("compare", "against")
            )
    where = filters.get("where") or ()
    if filters.get("compare") and filters.get("against"):
        _check_arms(p, ("compare", "against"), (filters["compare"], filters["against"]), where, err)
    if filters.get("group") and filters.get("than"):
        _check_arms(p, ("group", "than"), (filters["group"], filters["than"]), where, err)
        arm_keys = {k for f in ("compare", "against") for k, _ in filters.get(f) or ()}
        if clash := arm_keys & set(as_dict(filters["group"])):
            err.raw(
                f"{p}.group",
                f"sets {', '.join(sorted(clash))}, which the arms set; "
                "expected keys that split the runs of both arms",
            )
    # `where` may restrict `along` to some of its levels (a trend over the depths where
    # both arms train); any other filter on it would leave nothing to vary.
    restricts = as_dict(where).get(d.get("along"), ())
    need = 3 if kind == OPTIMUM else 2
    used = {
        k
        for name, f in filters.items()
        for k, _ in f or ()
        if not (name == "where" and k == d.get("along") and len(restricts) >= need)
    }
    along = _along(d, p, values, kind, err, used) if "along" in KIND_KEYS[kind] else ""
    if err.n > n0 or values is None or metric is None:
        return None
    return Claim(
        id=cid,
        kind=kind,
        says=says,
        source=source,
        hint=hint,
        question=question,
        primary=primary,
        sweep=sweep,
        metric=metric,
        expect=expect,
        margin=margin,
        threshold=threshold,
        where=where,
        compare=filters.get("compare") or (),
        against=filters.get("against") or (),
        group=filters.get("group") or (),
        than=filters.get("than") or (),
        along=along,
    )


def validate_claims(
    raw: Any,
    sweep_runs: Mapping[str, Sequence[Mapping[str, Any]]],
    err: Errors,
    known: Iterable[str] = (),
) -> dict[str, Claim]:
    """Every claim of a `claims` section, in file order; problems go to `err`.

    `sweep_runs` maps each valid sweep to its runs' configurations (dicts in the order of
    the configuration keys); `known` names sweeps that exist but failed their own
    validation (their claims are not checked further: no second error for them).
    """
    sweeps = {n: sweep_values(runs) for n, runs in sweep_runs.items()}
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        err.add("claims", raw, "a mapping of claim ids to claims")
        return {}
    known = set(sweeps) | {str(k) for k in known}
    err = _Counted(err)
    out = {}
    for cid, d in raw.items():
        if not (isinstance(cid, str) and ID_RE.fullmatch(cid)):
            err.add(f"claims.{cid}", cid, "a claim id of letters, digits, _ - (quote a number)")
            continue
        if (claim := _claim(cid, d, sweeps, known, err)) is not None:
            out[cid] = claim
    return out
