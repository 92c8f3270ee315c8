"""One default sweep trained by 1 and by 2 local worker processes, in this one process,
in interleaved rounds, the fastest of each counting (the machine is shared: the load
average is printed with each time); then its runs.csv and history.csv compared in every
computed column across 1, 2 and 3 workers (all columns: the tables hold no MLflow ids or
times before logging).

    python benchmarks/parallel.py                       # bn_placement, 180 runs
    python benchmarks/parallel.py --sweep classification --workers 2 --workers 4

Training only (shards, pool start-up and results sent back included); logging runs beside
it in the stage. The shards' own seconds are printed too: a sweep cannot go faster on 2
workers than its costliest worker's share of them (the ceiling printed).
"""

import os
import platform
import time

import click
import pandas as pd
import torch

from bnmodels.experiment.data import generate, normalize
from bnmodels.experiment.params import load_params
from bnmodels.pools import available_cores
from bnmodels.training.parallel import shards, train_shard
from bnmodels.training.sweep import train_sweep
from bnmodels.training.tables import history_frame, runs_frame


def sweep_data(params, name: str):
    runs = list(params.sweeps[name].runs)
    splits = {}
    for ds, norm, draw in {r.data_key for r in runs}:
        raw = generate(params.datasets[ds], draw or 0)
        splits[(ds, norm, draw)] = normalize(raw, norm, ds)
    return runs, splits


def shard_seconds(runs, splits, cut, execution, probes) -> list[float]:
    """Each shard trained alone in this process, in seconds (rounded to 0.1)."""
    out = []
    for shard in cut:
        part = [runs[i] for i in shard]
        datas = [splits[r.data_key] for r in part]
        dtype = getattr(torch, execution.dtype)
        t = time.perf_counter()
        train_shard(part, datas, "batched", "cpu", dtype, probes)
        out.append(round(time.perf_counter() - t, 1))
    return out


def lpt(costs: list[float], workers: int) -> float:
    """The makespan of the pool's order: each shard to the first worker free."""
    free = [0.0] * workers
    for c in costs:
        free[free.index(min(free))] += c
    return max(free)


@click.command()
@click.option("--sweep", "name", default="bn_placement", show_default=True)
@click.option("--params", "params_file", default="params.yaml", show_default=True)
@click.option("--workers", "counts", multiple=True, type=int, default=(1, 2))
@click.option("--repeat", default=5, show_default=True, help="rounds; the fastest counts")
def main(name: str, params_file: str, counts: tuple[int, ...], repeat: int):
    torch.set_num_threads(1)
    params = load_params(params_file)
    runs, splits = sweep_data(params, name)
    execution = params.execution
    probes = params.sweeps[name].probes
    cut = shards(runs, [splits[r.data_key] for r in runs])
    cpu = platform.processor() or platform.machine()
    print(f"{cpu}, {available_cores()} cores, torch {torch.__version__}")
    print(f"sweep {name}: {len(runs)} runs in {len(cut)} shards of {sorted(map(len, cut))} runs")
    seconds, tables = {}, {}
    for round_ in range(repeat):  # interleaved, so that a busy spell hits every count
        for w in sorted({*counts, 1}):
            load = os.getloadavg()[0]
            t = time.perf_counter()
            results = train_sweep(runs, splits, execution, probes=probes, workers=w)
            took = time.perf_counter() - t
            seconds[w] = min(seconds.get(w, took), took)
            tables[w] = (runs_frame(results), history_frame(results))
            print(f"  round {round_ + 1}, {w} worker(s): {took:6.1f} s   (load before: {load:.2f})")
    for w in {1, 2, 3} - set(tables):  # the identity check covers 1-3 workers
        results = train_sweep(runs, splits, execution, probes=probes, workers=w)
        tables[w] = (runs_frame(results), history_frame(results))
    costs = shard_seconds(runs, splits, cut, execution, probes)
    print(f"each shard alone, in the order the pool takes them: {costs}")
    print(f"ceiling on 2 workers from the shards' sizes alone: {sum(costs) / lpt(costs, 2):.2f}x")
    for w in counts:
        if w != 1:
            print(
                f"speed-up {w} workers / 1 (fastest of {repeat}): "
                f"{seconds[1]:.1f} / {seconds[w]:.1f} s = {seconds[1] / seconds[w]:.2f}x"
            )
    for r, h in tables.values():
        pd.testing.assert_frame_equal(r, tables[1][0], check_exact=True)
        pd.testing.assert_frame_equal(h, tables[1][1], check_exact=True)
    shape = tables[1][0].shape, tables[1][1].shape
    print(f"runs.csv {shape[0]} and history.csv {shape[1]}: identical in every column, 1-3 workers")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
