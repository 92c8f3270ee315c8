"""A large file data set: 10^6 rows x 50 features, a 100-run sweep, its time and peak memory.

Makes the file in a temporary folder (Parquet by default; `--format csv` for CSV), reads
and checks it as the read stage does (`files.read_table`), makes one draw, z-scores it,
and trains the sweep through the batched engine (not the pipeline), which holds the rows
once (training/shared_rows.py) instead of a copy per run. Prints each phase's time and
the peak resident memory (getrusage), beside the size of the data and of the per-run
copies the engine no longer makes. Few epochs and a large batch keep it short.

    python benchmarks/file_data.py                     # 10^6 x 50, 100 runs, 1 epoch
    python benchmarks/file_data.py --rows 100000 --format csv
"""

import resource
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import pandas as pd
import torch

from bnmodels.experiment.config import FileSpec, RunConfig
from bnmodels.experiment.data import normalize
from bnmodels.experiment.file_params import count_rows
from bnmodels.experiment.files import read_table, split_draw
from bnmodels.training.batched import RUN_PAD, train_runs


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_file(folder: Path, rows: int, features: int, fmt: str) -> Path:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, features), dtype=np.float32)
    x *= np.logspace(-3, 3, features, dtype=np.float32)  # badly scaled, as real data are
    y = (x[:, :5] / np.logspace(-3, 3, features)[:5]).sum(axis=1) ** 2
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(features)]).assign(y=y)
    path = folder / f"big.{fmt}"
    df.to_parquet(path, index=False) if fmt == "parquet" else df.to_csv(path, index=False)
    return path


@click.command()
@click.option("--rows", default=1_000_000, show_default=True)
@click.option("--features", default=50, show_default=True)
@click.option("--runs", default=100, show_default=True)
@click.option("--epochs", default=1, show_default=True)
@click.option("--batch-size", default=1000, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet")
def main(rows: int, features: int, runs: int, epochs: int, batch_size: int, fmt: str):
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        path = make_file(Path(tmp), rows, features, fmt)
        made = time.perf_counter() - t
        size_mb = path.stat().st_size / 2**20
        rss_before = peak_rss_mb()  # making the file (pandas) is not the sweep's cost
        t = time.perf_counter()
        spec = FileSpec("big", str(path), str(path), "y", "regression", 1, 0.7, 0)
        spec = FileSpec(**{**spec.__dict__, "rows": count_rows(spec)})
        table = read_table(spec)
        split = normalize(split_draw(table, spec, 0), "zscore")
        del table
        read = time.perf_counter() - t
    # 100 runs: BN none/pre/post x sigmoid/relu, seeds to fill (one draw: one split)
    shapes = [(bn, act) for bn in ("none", "pre", "post") for act in ("sigmoid", "relu")]
    cfgs = [
        RunConfig("big", "zscore", act, bn, 1, 4, "default", 0.1, batch_size, 0.03, epochs, seed)
        for i in range(runs)
        for bn, act in [shapes[i % len(shapes)]]
        for seed in [i // len(shapes)]
    ]
    t = time.perf_counter()
    results = train_runs(cfgs, [split] * runs)
    trained = time.perf_counter() - t
    n_train = split.x_train.shape[0]
    data_mb = (split.x_train.numel() + split.x_test.numel()) * 4 / 2**20
    padded = -(-runs // RUN_PAD) * RUN_PAD
    copies_mb = padded * n_train * features * 4 / 2**20
    steps = results[0].history["step"][-1]
    final = np.nanmedian([r.history["test_mse"][-1] for r in results])
    print(
        f"file: {rows:,} rows x {features} features, {fmt}, {size_mb:,.0f} MiB"
        f" (made in {made:.1f} s)"
    )
    print(f"read, checked, split and z-scored: {read:.1f} s")
    print(f"sweep: {runs} runs, {epochs} epoch(s) of batch {batch_size} = {steps:.0f} steps each")
    print(f"trained in {trained:.1f} s; median final test MSE {final:.4g}")
    print(f"data (train + test, float32): {data_mb:,.0f} MiB, held once")
    print(f"per-run copies of the train rows it does not make: {copies_mb:,.0f} MiB")
    print(f"peak RSS: {peak_rss_mb():,.0f} MiB (after making the file: {rss_before:,.0f} MiB)")


if __name__ == "__main__":
    main()
