"""Run-steps per second of the reference and batched engines on one mixed sweep.

Both engines train the same runs in this one process, one after the other, so the ratio
is measured under the same conditions (this machine is shared and noisy). A run-step is
one SGD step of one run.

    python benchmarks/engines.py                      # CPU: 216 mixed runs, both engines
    python benchmarks/engines.py --device cuda --runs 100000 --reference-runs 20
    python benchmarks/engines.py --device cuda --runs 10000 --no-graphs   # eager CUDA

With --reference-runs K the reference engine trains only the first K runs (its rate is
per run, so a sample measures it; say so when quoting).
"""

import itertools
import json
import platform
import time

import click
import torch

from bnmodels.experiment.config import DatasetSpec, RunConfig
from bnmodels.experiment.data import generate
from bnmodels.training.batched import train_runs
from bnmodels.training.reference import train_reference
from bnmodels.training.result import batch_slices


def mixed_sweep(n_runs: int, epochs: int, depth: int, batch_size: int) -> list[RunConfig]:
    """Every activation x BN mode x init x lr x momentum, then seeds until n_runs."""
    shapes = list(
        itertools.product(
            ["sigmoid", "tanh", "relu"],
            ["none", "pre", "post"],
            ["default", "xavier"],
            [0.01, 0.03, 0.1],
            [0.1, 0.5],
        )
    )
    runs = []
    for seed in itertools.count(24):
        for act, bn, init, lr, mom in shapes:
            runs.append(
                RunConfig(
                    "quad2", "none", act, bn, depth, 4, init, mom, batch_size, lr, epochs, seed
                )
            )
            if len(runs) == n_runs:
                return runs
    raise AssertionError


def run_steps(runs, n_train) -> int:
    return sum(r.epochs * len(batch_slices(n_train, r.batch_size)) for r in runs)


@click.command()
@click.option("--runs", "n_runs", default=216, show_default=True)
@click.option("--epochs", default=3, show_default=True)
@click.option("--depth", default=2, show_default=True)
@click.option("--batch-size", default=10, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", default=1, show_default=True)
@click.option(
    "--reference-runs",
    default=None,
    type=int,
    help="train only this many runs with the reference engine (default: all)",
)
@click.option("--graphs/--no-graphs", default=True, help="CUDA graphs on cuda")
def main(n_runs, epochs, depth, batch_size, device, threads, reference_runs, graphs):
    torch.set_num_threads(threads)
    spec = DatasetSpec("quad2", 1000, (2.0, -1.0), False, 0.01, 2, 420, 0.7, (1.0, 1.0), (0.0, 0.0))
    split = generate(spec)
    n_train = split.x_train.shape[0]
    runs = mixed_sweep(n_runs, epochs, depth, batch_size)
    ref_runs = runs[: reference_runs or len(runs)]

    out = {
        "device": torch.cuda.get_device_name()
        if device == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": threads,
        "runs": len(runs),
        "epochs": epochs,
        "depth": depth,
        "batch_size": batch_size,
        "cuda_graphs": graphs if device == "cuda" else None,
    }

    t = time.perf_counter()
    for r in ref_runs:
        train_reference(r, split)
    t_ref = time.perf_counter() - t
    out["reference_runs"] = len(ref_runs)
    out["reference_run_steps_per_s"] = run_steps(ref_runs, n_train) / t_ref

    if device == "cuda":  # first call pays CUDA and cuBLAS start-up: warm up untimed
        train_runs(runs[:64], [split] * 64, device=device)
        torch.cuda.synchronize()
    t = time.perf_counter()
    from bnmodels.training import batched
    from bnmodels.training.group import Init

    engine_kw = {} if device != "cuda" else {"cuda_graphs": graphs}
    groups: dict = {}
    for i, r in enumerate(runs):
        groups.setdefault(batched.group_key(r, split), []).append(i)
    init = Init()
    timings: dict = {}
    for idx in groups.values():
        batched.train_group(
            [runs[i] for i in idx],
            [split] * len(idx),
            device,
            init=init,
            timings=timings,
            **engine_kw,
        )
    if device == "cuda":
        torch.cuda.synchronize()
    t_b = time.perf_counter() - t
    out["batched_seconds"] = t_b
    out["batched_run_steps_per_s"] = run_steps(runs, n_train) / t_b
    out["ratio"] = out["batched_run_steps_per_s"] / out["reference_run_steps_per_s"]
    out["batched_timings"] = timings
    out["training_loop_run_steps_per_s"] = run_steps(runs, n_train) / timings["training"]
    click.echo(
        f"{out['device']}: {len(runs)} runs x {epochs} epochs, depth {depth}, batch {batch_size}\n"
        f"  reference: {out['reference_run_steps_per_s']:>14,.0f} run-steps/s"
        f"  ({len(ref_runs)} runs)\n"
        f"  batched:   {out['batched_run_steps_per_s']:>14,.0f} run-steps/s"
        f"  ({t_b:.2f} s)\n"
        f"  ratio:     {out['ratio']:>14,.1f}x\n"
        f"  batched, training loop alone (no set-up, no results): "
        f"{out['training_loop_run_steps_per_s']:,.0f} run-steps/s; seconds "
        + ", ".join(f"{k} {v:.2f}" for k, v in timings.items())
    )
    click.echo(json.dumps(out))


if __name__ == "__main__":
    main()
