"""What several draws of a data set cost a sweep: the same runs on 1, 5 or 10 draws.

Each run of seed s trains on draw s mod K (SPEC 2, draws). The batched engine groups runs
by the shape of their computation, not by their data (engine.group_key), so runs on
different draws of one data set share a group; this measures what is left: making and
normalizing the draws, stacking them, and any change in the training itself. Every K is
timed in this one process, rounds interleaved (the machine is shared and noisy).

    python benchmarks/draws.py                       # 10 seeds, K = 1, 5, 10
    python benchmarks/draws.py --rounds 5 --epochs 40
"""

import copy
import statistics
import time

import click
import torch

from bnmodels.experiment.data import generate, normalize
from bnmodels.experiment.params import validate
from bnmodels.training.batched import group_key, train_runs

PARAMS = {
    "datasets": {
        "quad5": {
            "num_examples": 1000,
            "w": [2, -1, 3, 1, 2],
            "bias": False,
            "delta": 0.01,
            "deg": 2,
            "seed": 420,
            "train_fraction": 0.7,
        }
    },
    "defaults": {
        "dataset": "quad5",
        "normalization": "zscore",
        "activation": "sigmoid",
        "bn": "none",
        "depth": 1,
        "width": 4,
        "init": "default",
        "momentum": 0.1,
        "batch_size": 10,
        "lr": 0.03,
        "epochs": 10,
        "seed": 24,
    },
    # like the default depth sweep: 2 activations x 2 BN modes x 4 depths x 10 seeds
    "sweeps": {
        "depth": {
            "activation": ["sigmoid", "tanh"],
            "bn": ["none", "pre"],
            "depth": [1, 2, 3, 4],
            "seed": list(range(24, 34)),
        }
    },
}


def sweep_seconds(draws: int, epochs: int) -> tuple[float, int]:
    """Seconds to make the data and train the sweep on `draws` draws; and its groups."""
    raw = copy.deepcopy(PARAMS)
    raw["datasets"]["quad5"]["draws"] = draws
    raw["defaults"]["epochs"] = epochs
    t = time.perf_counter()
    params = validate(raw)
    spec, runs = params.datasets["quad5"], params.sweeps["depth"].runs
    splits = [normalize(generate(spec, d), "zscore") for d in range(draws)]
    datas = [splits[r.draw or 0] for r in runs]
    train_runs(runs, datas)
    groups = len({group_key(r, d) for r, d in zip(runs, datas, strict=True)})
    return time.perf_counter() - t, groups


@click.command()
@click.option("--rounds", default=3, show_default=True)
@click.option("--epochs", default=10, show_default=True)
@click.option("--draws", "ks", default="1,5,10", show_default=True)
def main(rounds: int, epochs: int, ks: str):
    torch.set_num_threads(1)
    ks = [int(k) for k in ks.split(",")]
    times = {k: [] for k in ks}
    groups = {}
    sweep_seconds(ks[0], 1)  # warm-up: imports, allocator, first kernels
    for _ in range(rounds):
        for k in ks:
            seconds, groups[k] = sweep_seconds(k, epochs)
            times[k].append(seconds)
    n = len(validate(PARAMS).sweeps["depth"].runs)
    click.echo(f"{n} runs (10 seeds), batch 10, {epochs} epochs, CPU, 1 thread; median of {rounds}")
    base = statistics.median(times[ks[0]])
    for k in ks:
        med = statistics.median(times[k])
        click.echo(
            f"  draws {k:>3}: {med:6.2f} s  ({groups[k]} groups)  ratio to draws {ks[0]}: "
            f"{med / base:.3f}   all: {', '.join(f'{t:.2f}' for t in times[k])}"
        )


if __name__ == "__main__":
    main()
