"""The budget study of the real-data sweeps (issue 25): each trained far past its budget
once, without MLflow, and its runs' states read at shorter budgets exactly as the report
reads them (`study.convergence.run_states` on the curves cut at that epoch: converged only
where the equivalence test shows the last fifth moved less than 5%).

    PYTHONPATH=. python benchmarks/transfer_budgets.py [--epochs 400] [--sweeps a,b]

Needs `data/processed` (a `dvc repro` of the defaults: the read@ and normalize stages).
Prints, per sweep and configuration, the median final test loss over the seeds and how
many seeds' runs are converged (c), at each budget; `benchmarks/results/budgets-transfer.txt`
keeps what it showed. A sweep named in CANDIDATES but not (yet) in params.yaml is studied
with that definition: the budget of a new sweep is chosen before its runs exist.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import pandas as pd

from bnmodels.experiment.checks import read_yaml
from bnmodels.experiment.config import Execution
from bnmodels.experiment.params import validate
from bnmodels.experiment.plan import load_plan_data, make_plans, plan_runs
from bnmodels.pools import available_cores
from bnmodels.study import convergence
from bnmodels.study.prepared import SweepData, prepare
from bnmodels.training.sweep import train_sweep
from bnmodels.training.tables import read_tables, write_tables

BUDGETS = (50, 100, 150, 200, 300, 400)
SWEEPS = ("transfer_diabetes", "transfer_breast_cancer", "transfer_batch_size")
CANDIDATES = {  # the batch-size question on real data, as the course's batch_size sweep
    "transfer_batch_size": {
        "dataset": "diabetes",
        "normalization": "zscore",
        "bn": ["none", "pre"],
        "batch_size": [2, 5, 10, 30, 50, 100],
        "lr": 0.001,
        "seed": list(range(100, 110)),
    },
}


def states_at(sw, epochs: int) -> pd.DataFrame:
    """Each run's state and final test loss had it stopped after `epochs` epochs."""
    curves = {k: c.iloc[:, :epochs] for k, c in sw.curves.items()}
    runs = sw.runs.copy()
    runs["epochs"] = epochs
    loss = runs["task"].map(lambda t: convergence.LOSS[t][0])
    final = np.array([curves[col].iloc[i, epochs - 1] for i, col in enumerate(loss)], dtype=float)
    runs["diverged"] = runs["diverged"].to_numpy(bool) & ~np.isfinite(final)
    out = convergence.run_states(runs, curves)
    out["final_loss"] = final
    return out


def table(sw, keys: list[str], budgets) -> pd.DataFrame:
    """Per configuration: "median loss" and "converged/seeds" at each budget."""
    cols = {}
    for e in budgets:
        st = states_at(sw, e)
        frame = pd.concat([sw.runs[keys], st], axis=1)
        g = frame.groupby(keys, sort=False)
        conv = g["state"].agg(lambda s: int((s == convergence.CONVERGED).sum()))
        med = g["final_loss"].median()
        n = g.size()
        cols[f"E{e}"] = [f"{m:.4g} {c}/{k}c" for m, c, k in zip(med, conv, n, strict=True)]
        index = med.index
    return pd.DataFrame(cols, index=index)


@click.command()
@click.option("--epochs", default=max(BUDGETS), show_default=True)
@click.option("--sweeps", default=",".join(SWEEPS), show_default=True)
@click.option("--processed", default="data/processed", show_default=True)
def main(epochs: int, sweeps: str, processed: str):
    raw = read_yaml("params.yaml")
    raw["claims"] = {}
    names = sweeps.split(",")
    chosen = {}
    for name in names:
        chosen[name] = copy.deepcopy(raw["sweeps"].get(name) or CANDIDATES[name])
        chosen[name]["epochs"] = epochs
        chosen[name].pop("steps", None)
    raw["sweeps"] = chosen
    params = validate(raw)
    plans = make_plans(params, Path(processed))
    budgets = [b for b in BUDGETS if b <= epochs]
    for name in names:
        plan = plans[name]
        runs, splits = plan_runs(plan), load_plan_data(plan, Path(processed))
        t0 = time.time()
        results = train_sweep(runs, splits, Execution(), workers=available_cores())
        dt = time.time() - t0
        with tempfile.TemporaryDirectory() as tmp:  # the tables as the report reads them
            write_tables(tmp, results)
            runs_table, history = read_tables(tmp)
        sw = prepare(name, SweepData(runs_table, history, axes=plan["axes"]))
        keys = [k for k in sw.axes if k != "seed"]
        print(f"\n{name}: {len(runs)} runs x {epochs} epochs in {dt:.0f} s", flush=True)
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(table(sw, keys, budgets).to_string(), flush=True)


if __name__ == "__main__":
    main()
