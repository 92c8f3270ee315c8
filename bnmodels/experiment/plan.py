"""Plans: a sweep's runs, its axes and the hashes of the data it trains on (SPEC 1).

The plan stage writes one per sweep; a train stage depends on its plan alone, so a sweep
retrains exactly when what it computes changes, whatever else changed in params.yaml.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from bnmodels.errors import ParamsError, StageError
from bnmodels.experiment.config import Params, RunConfig, used_data
from bnmodels.experiment.layout import data_file, data_name, error_file

if TYPE_CHECKING:  # the plan stage validates and plans without torch (1.3 s to import)
    from bnmodels.experiment.data import Split

PLAN_VERSION = 1


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_plans(params: Params, processed: Path, file: str = "params.yaml") -> dict[str, dict]:
    """Each sweep's plan: its runs, axes, and the data files (with hashes) it trains on.

    A plan changes exactly when what its sweep computes changes, so a train stage that
    depends on its plan reruns exactly then (SPEC 1), whatever else changed in params.
    """
    errors, plans = [], {}
    for name, sweep in params.sweeps.items():
        data = {}
        for ds, norm, draw in used_data(sweep):
            f, e = data_file(processed, ds, norm, draw), error_file(processed, ds, norm, draw)
            if f.exists():
                data[data_name(ds, norm, draw)] = _md5(f)
            else:
                why = e.read_text().strip() if e.exists() else f"{f} is missing"
                key = "normalization" if "normalization" in sweep.axes else "dataset"
                errors.append(f"{file}: sweeps.{name}.{key}: {why}")
        plans[name] = {
            "plan_version": PLAN_VERSION,
            "sweep": name,
            "axes": {k: list(v) for k, v in sweep.axes.items()},
            "data_md5": data,
            "runs": [r.as_dict() for r in sweep.runs],
            # only when on: plans of sweeps without probes stay byte for byte as they were
            **({"probes": True} if sweep.probes else {}),
        }
    if errors:
        raise ParamsError(errors)
    return plans


def plan_text(plan: dict) -> str:
    """Canonical JSON: byte-stable, so an unchanged sweep leaves its plan's hash unchanged."""
    return json.dumps(plan, indent=1, sort_keys=True) + "\n"


def plan_hash(plan: dict) -> str:
    return hashlib.sha256(plan_text(plan).encode()).hexdigest()[:16]


def plan_runs(plan: dict) -> list[RunConfig]:
    return [RunConfig(**r) for r in plan["runs"]]


def load_plan_data(plan: dict, processed: Path) -> dict[tuple[str, str, int], Split]:
    """The splits a plan names, keyed (data set, normalization, draw) as `RunConfig.data_key`,
    checked against the hashes it recorded."""
    from bnmodels.experiment.data import load_split

    out = {}
    for name, md5 in plan["data_md5"].items():
        ds, norm, *draw = name.split("/")
        key = (ds, norm, int(draw[0].removeprefix("draw")) if draw else 0)
        f = data_file(processed, *key)
        if not f.exists() or _md5(f) != md5:
            raise StageError(
                f"{f} is missing or changed since the plan was made; "
                "run `dvc repro` (not a single stage) again"
            )
        out[key] = load_split(f)
    return out
