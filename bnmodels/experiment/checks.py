"""The building blocks of params.yaml's validation: the YAML reader, the list of problems
(every problem of a file at once, one line each), and the value checks that more than one
section uses (experiment.params, experiment.file_params, study.claim). Each checker
returns None when the value is fine, else what is allowed."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from bnmodels.errors import ParamsError

# YAML: PyYAML follows YAML 1.1, where `1e-3` is a string; users (and DVC's own
# YAML 1.2 parser) read it as a number, so resolve it as one.


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _no_duplicate_keys(loader, node, deep=False):
    # Merge keys (`<<: *anchor`) may be overridden by explicit keys: not duplicates.
    keys = [
        loader.construct_object(k, deep=deep)
        for k, _ in node.value
        if k.tag != "tag:yaml.org,2002:merge"
    ]
    dup = sorted({str(k) for k in keys if keys.count(k) > 1})
    if dup:
        raise yaml.constructor.ConstructorError(
            None, None, f"duplicate key(s) {', '.join(dup)}", node.start_mark
        )
    return loader.construct_mapping(node, deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a syntax error becomes a ParamsError naming file, line and column."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ParamsError([f"{path}: cannot read the file ({e.strerror})"]) from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ParamsError([f"{path}:{where}: invalid YAML: {problem}"]) from None


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    if not isinstance(v, int | float) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer too large for a float
        return False


def one_of(options):
    return lambda v: None if v in options else "one of " + ", ".join(options)


def int_at_least(lo):
    return lambda v: None if is_int(v) and v >= lo else f"an integer >= {lo}"


def check_seed(v):
    return None if is_int(v) and 0 <= v < 2**63 else "an integer in [0, 2**63)"


def check_train_fraction(v):
    return None if is_num(v) and 0 < v < 1 else "a number in (0, 1)"


class ErrorList:
    """Problems of a params file, one readable line each (`bnmodels.study.claim` adds the
    claims section's to the same list)."""

    def __init__(self, file: str):
        self.file, self.items = file, []

    def add(self, path: str, value: Any, allowed: str):
        shown = show_value(value)
        self.items.append(f"{self.file}: {path}: {shown} is not allowed; expected {allowed}")

    def raw(self, path: str, message: str):
        self.items.append(f"{self.file}: {path}: {message}")


def show_value(v: Any) -> str:
    s = repr(v) if isinstance(v, str) else yaml.safe_dump(v, default_flow_style=True).strip()
    s = s.removesuffix("\n...").strip()
    return s if len(s) <= 60 else s[:57] + "..."


def mapping_section(raw: dict, key: str, err: ErrorList, required=True) -> dict | None:
    if key not in raw:
        if required:
            err.raw(key, "missing section")
        return None
    v = raw[key]
    if not isinstance(v, dict) or not v:
        err.add(key, v, "a non-empty mapping")
        return None
    return v


def unknown_keys(d: dict, allowed, path: str, err: ErrorList):
    for k in d:
        if k not in allowed:
            err.raw(
                f"{path}.{k}" if path else str(k),
                f"unknown key; expected one of {', '.join(allowed)}",
            )


def check_draws(d: dict, p: str, err: ErrorList) -> dict[str, int]:
    """`draws` (default 1): how many draws of the data set, draw k from seed + k."""
    v = d.get("draws", 1)
    if allowed := int_at_least(1)(v):
        err.add(f"{p}.draws", v, allowed)
        return {}
    if is_int(d.get("seed")) and d["seed"] + v - 1 >= 2**63:
        err.raw(f"{p}.draws", f"{v} draws need seeds up to seed + {v - 1}, beyond 2**63 - 1")
    return {"draws": v}


def check_split_rows(p: str, rows: int, train_fraction: float, what: str, err: ErrorList) -> None:
    n_train = int(rows * train_fraction)
    if n_train < 2 or rows - n_train < 1:
        err.raw(
            p,
            f"{what} x train_fraction {train_fraction} leaves {n_train} train and "
            f"{rows - n_train} test rows; need at least 2 and 1",
        )
