"""The long-budget study behind the default sweeps' epochs (issue 11): every default sweep
trained far longer than its budget, with the grids the redesign considers (depth to 8, a
wider lr grid), without MLflow; one pickle per sweep with each run's configuration and
per-epoch curves, so that convergence can be read off at any budget afterwards.

    PYTHONPATH=. python benchmarks/budgets.py EPOCHS OUTDIR [--device cuda] [--sweeps a,b]

It ran once on a lent H200 (`benchmarks/results/budgets.txt` holds what it showed).
"""

from __future__ import annotations

import gzip
import pickle
import sys
import time
from pathlib import Path

import click
import numpy as np

from bnmodels.experiment.checks import read_yaml
from bnmodels.experiment.config import Execution, used_pairs
from bnmodels.experiment.data import generate, normalize
from bnmodels.experiment.params import validate
from bnmodels.training.sweep import train_sweep

KEEP = (
    "train_mse",
    "test_mse",
    "train_ce",
    "test_ce",
    "train_accuracy",
    "test_accuracy",
    "dead_fraction",
)
GRIDS = {  # the redesign's candidate grids
    "depth": {"depth": [1, 2, 3, 4, 6, 8]},
    "learning_rate": {"lr": [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]},
    "dead_relu": {"depth": [2, 4, 6, 8]},
    "bn_placement": {"probes": False},
}


@click.command()
@click.argument("epochs", type=int)
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--device", default="auto")
@click.option("--sweeps", default="")
def main(epochs: int, outdir: str, device: str, sweeps: str):
    raw = read_yaml("params.yaml")
    raw["claims"] = {}
    for name, s in raw["sweeps"].items():
        s.update(GRIDS.get(name, {}))
        s["epochs"] = epochs
    params = validate(raw)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    names = sweeps.split(",") if sweeps else list(params.sweeps)
    for name in names:
        sweep = params.sweeps[name]
        splits = {
            (ds, norm): normalize(generate(params.datasets[ds]), norm)
            for ds, norm in used_pairs(sweep)
        }
        t0 = time.time()
        res = train_sweep(sweep.runs, splits, Execution(device=device))
        dt = time.time() - t0
        rows = []
        for r in res:
            h = r.history
            cols = [c for c in h if c in KEEP or c.startswith("grad_ratio_l")]
            rows.append(
                {
                    "config": r.config.as_dict(),
                    "diverged": bool(r.diverged),
                    "history": {c: np.asarray(h[c], dtype=np.float32) for c in cols},
                }
            )
        with gzip.open(out / f"{name}.pkl.gz", "wb") as f:
            pickle.dump(rows, f)
        print(f"{name}: {len(res)} runs x {epochs} epochs in {dt:.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
