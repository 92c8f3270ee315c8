"""What the loss-landscape probes cost: the same runs trained with probes off and on.

Both variants train in this one process, interleaved (median of 3 each), so the ratio
is measured under the same conditions on a shared, noisy machine. Probes cost a few
forward/backward passes once per epoch, so their share falls with the steps per epoch:
the batch sizes below span the default sweeps' (10 to a full batch of 700 rows).

    PYTHONPATH=. python benchmarks/probes.py
"""

import sys
import time
from pathlib import Path

import click
import numpy as np
import torch

from bnmodels.experiment.config import DatasetSpec
from bnmodels.experiment.data import generate
from bnmodels.training.batched import train_runs

sys.path.insert(0, str(Path(__file__).parent))
from engines import mixed_sweep  # noqa: E402


@click.command()
@click.option("--runs", "n_runs", default=108, show_default=True)
@click.option("--epochs", default=4, show_default=True)
def main(n_runs: int, epochs: int):
    torch.set_num_threads(1)
    spec = DatasetSpec("quad2", 1000, (2.0, -1.0), False, 0.01, 2, 420, 0.7, (1.0,) * 2, (0.0,) * 2)
    split = generate(spec)
    for batch_size in (10, 50, 700):
        runs = mixed_sweep(n_runs, epochs, 3, batch_size)
        datas = [split] * len(runs)
        times = {False: [], True: []}
        for _ in range(3):
            for probes in (False, True):
                start = time.perf_counter()
                train_runs(runs, datas, probes=probes)
                times[probes].append(time.perf_counter() - start)
        off, on = np.median(times[False]), np.median(times[True])
        click.echo(
            f"batch {batch_size:4d} ({700 // batch_size:2d} steps/epoch), {n_runs} runs x "
            f"{epochs} epochs, depth 3: off {off:.3f} s, on {on:.3f} s, "
            f"probes add {100 * (on / off - 1):.0f}%"
        )


if __name__ == "__main__":
    main()
