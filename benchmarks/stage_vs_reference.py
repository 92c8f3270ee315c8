"""What a user waits for: the train stage of a sweep, start-up and MLflow logging included
(SQLite, the default store), against training the same runs one by one with the reference
engine (a plain PyTorch loop; training alone, no logging). Both in this one invocation.

    PYTHONPATH=. python benchmarks/stage_vs_reference.py                # held-out sweep
    PYTHONPATH=. python benchmarks/stage_vs_reference.py --full         # reference: all runs
    PYTHONPATH=. python benchmarks/stage_vs_reference.py --sweep big    # the 405-run sweep

`heldout` is the sweep of issue 10, chosen apart from the default params: 3 activations x
3 BN x depth 2-3 x batch 20/40 x 4 lr x 3 seeds = 432 runs of 40 epochs. By default the
reference engine trains one seed of each configuration (its cost per run does not depend
on the seed) and the total is scaled by the seed count.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import torch

from bnmodels.experiment.plan import load_plan_data, plan_runs
from bnmodels.training.reference import train_reference

ROOT = Path(__file__).resolve().parents[1]
HEAD = """\
datasets:
  quad2: {num_examples: 1000, w: [2, -1], bias: false, delta: 0.01, deg: 2, seed: 420,
          train_fraction: 0.7}
defaults: {dataset: quad2, normalization: none, activation: sigmoid, bn: none, depth: 1,
           width: 4, init: default, momentum: 0.1, batch_size: 10, lr: 0.03, epochs: 40,
           seed: 24}
sweeps:
"""
SWEEPS = {
    "heldout": (
        "{activation: [sigmoid, tanh, relu], bn: [none, pre, post], depth: [2, 3], "
        "batch_size: [20, 40], lr: [0.01, 0.03, 0.1, 0.3], seed: [1, 2, 3]}"
    ),
    "big": (
        "{activation: [sigmoid, tanh, relu], bn: [none, pre, post], depth: [1, 2, 3], "
        "seed: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]}"
    ),
}


@click.command()
@click.option("--full", is_flag=True, help="train every run with the reference engine")
@click.option("--sweep", type=click.Choice(list(SWEEPS)), default="heldout", show_default=True)
def main(full: bool, sweep: str):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name in ("bnmodels", "stages"):
            shutil.copytree(ROOT / name, d / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "dvc.yaml", d)
        (d / "params.yaml").write_text(
            f"{HEAD}  {sweep}: {SWEEPS[sweep]}\nclaims: {{}}\nfile_datasets: {{}}\n"
        )
        for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "repro", "-q", "plan"]):
            subprocess.run(cmd, cwd=d, env=env, check=True, capture_output=True)
        stage = [
            sys.executable,
            "stages/train.py",
            sweep,
            "--plan",
            f"data/plans/{sweep}.json",
            "--processed",
            "data/processed",
            "--out",
            f"runs/{sweep}",
        ]
        t = time.perf_counter()
        subprocess.run(stage, cwd=d, env=env, check=True, capture_output=True)
        t_stage = time.perf_counter() - t

        plan = json.loads((d / f"data/plans/{sweep}.json").read_text())
        runs = plan_runs(plan)
        splits = load_plan_data(plan, d / "data/processed")
        sample = runs if full else [r for r in runs if r.seed == runs[0].seed]
        torch.set_num_threads(1)
        t = time.perf_counter()
        for r in sample:
            train_reference(r, splits[r.data_key])
        t_ref = (time.perf_counter() - t) * len(runs) / len(sample)

    how = "all runs" if full else f"{len(sample)} runs (one seed each), x{len(runs) // len(sample)}"
    click.echo(
        f"{sweep}: {len(runs)} runs, 40 epochs, {os.cpu_count()} cores, SQLite\n"
        f"  train stage (process, batched engine, MLflow logging): {t_stage:7.1f} s\n"
        f"  reference engine, training alone ({how}):  {t_ref:7.1f} s\n"
        f"  ratio: {t_ref / t_stage:.1f}x"
    )


if __name__ == "__main__":
    main()
