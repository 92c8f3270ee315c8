"""Run-steps per second of the reference and batched engines at widths 4, 16, 64, 256, on
one core (torch.set_num_threads(1)), in one process: the ratio at each width is measured
under the same conditions (this machine is shared and noisy). A run-step is one SGD step
of one run.

Each width trains the same mix of runs: every activation x norm (none, BatchNorm before
the activation, layer norm before, group norm after with 2 groups), then seeds, on quad2
(700 train rows). The reference engine trains a sample of them (its rate is per run).

    python benchmarks/widths.py                      # 128 runs per width, 8 reference runs
    python benchmarks/widths.py --profile 64         # and cProfile the batched engine there
"""

import cProfile
import io
import itertools
import platform
import pstats
import time

import click
import torch

from bnmodels.experiment.config import DatasetSpec, RunConfig
from bnmodels.experiment.data import generate
from bnmodels.training.batched import train_runs
from bnmodels.training.reference import train_reference
from bnmodels.training.result import batch_slices

WIDTHS = (4, 16, 64, 256)
NORMS = (("none", "none", None), ("batch", "pre", None), ("layer", "pre", None))
NORMS += (("group", "post", 2),)


def mixed_runs(n_runs: int, width: int, depth: int, epochs: int, batch_size: int):
    """Every activation x norm, then seeds until n_runs."""
    shapes = list(itertools.product(("sigmoid", "tanh", "relu"), NORMS))
    runs = []
    for seed in itertools.count(24):
        for act, (norm, at, groups) in shapes:
            bn = at if norm == "batch" else "none"
            runs.append(
                RunConfig(
                    "quad2", "none", act, bn, depth, width, "default", 0.1, batch_size, 0.03,
                    epochs, seed, norm=norm, norm_at=at, groups=groups,
                )
            )  # fmt: skip
            if len(runs) == n_runs:
                return runs
    raise AssertionError


def run_steps(runs, n_train) -> int:
    return sum(r.epochs * len(batch_slices(n_train, r.batch_size)) for r in runs)


def rates(runs, ref_runs, split, profile: bool):
    """(reference, batched) run-steps per second; the batched engine's cProfile if asked."""
    n_train = split.x_train.shape[0]
    t = time.perf_counter()
    for r in ref_runs:
        train_reference(r, split)
    ref = run_steps(ref_runs, n_train) / (time.perf_counter() - t)
    prof = cProfile.Profile() if profile else None
    t = time.perf_counter()
    if prof:
        prof.enable()
    train_runs(runs, [split] * len(runs))
    if prof:
        prof.disable()
    return ref, run_steps(runs, n_train) / (time.perf_counter() - t), prof


@click.command()
@click.option("--runs", "n_runs", default=128, show_default=True, help="batched runs per width")
@click.option("--reference-runs", default=8, show_default=True)
@click.option("--depth", default=2, show_default=True)
@click.option("--epochs", default=1, show_default=True)
@click.option("--batch-size", default=10, show_default=True)
@click.option("--profile", "profile_width", default=None, type=int, help="cProfile this width")
def main(n_runs, reference_runs, depth, epochs, batch_size, profile_width):
    torch.set_num_threads(1)
    spec = DatasetSpec("quad2", 1000, (2.0, -1.0), False, 0.01, 2, 420, 0.7, (1.0, 1.0), (0.0, 0.0))
    split = generate(spec)
    click.echo(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread: "
        f"{n_runs} runs per width (batched), {reference_runs} (reference), depth {depth}, "
        f"batch {batch_size}, {epochs} epoch(s) of {split.x_train.shape[0]} rows; "
        "norms none / batch pre / layer pre / group(2) post x sigmoid / tanh / relu"
    )
    warm = mixed_runs(reference_runs, 4, depth, 1, batch_size)  # first calls pay start-up
    rates(warm, warm, split, False)
    click.echo(f"{'width':>6} {'reference':>14} {'batched':>14} {'ratio':>8}   run-steps/s")
    profiles = {}
    for width in WIDTHS:
        runs = mixed_runs(n_runs, width, depth, epochs, batch_size)
        ref, bat, prof = rates(runs, runs[:reference_runs], split, width == profile_width)
        click.echo(f"{width:>6} {ref:>14,.0f} {bat:>14,.0f} {bat / ref:>7.1f}x")
        if prof:
            profiles[width] = prof
    for width, prof in profiles.items():
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
        click.echo(f"\nbatched engine at width {width}, by own time:\n{out.getvalue()}")


if __name__ == "__main__":
    main()
