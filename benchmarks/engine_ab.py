"""The batched engine at a git revision against the working tree's: same bits? same speed?

For refactors of `bnmodels/training/batched.py` that must change nothing: both versions train the
same mixed sweeps in this one process, histories and final weights are compared bit for
bit, and the timings are interleaved (median of 5 each) so that the ratio is measured
under the same conditions on a shared, noisy machine.

    PYTHONPATH=. python benchmarks/engine_ab.py --rev 29ce728
"""

import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import torch

from bnmodels.experiment.config import DatasetSpec
from bnmodels.experiment.data import generate
from bnmodels.training import batched as new_engine

sys.path.insert(0, str(Path(__file__).parent))
from engines import mixed_sweep  # noqa: E402


def engine_at(rev: str):
    """The engine module as it was at `rev` (a revision after the move to subpackages)."""
    text = subprocess.run(
        ["git", "show", f"{rev}:bnmodels/training/batched.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "engine_at_rev.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("engine_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def identical(a, b) -> bool:
    """Same bits in every column the old engine fills (an old engine imports today's
    history_columns, so columns added since are all NaN on its side and skipped)."""
    return all(
        np.array_equal(x.history[c], y.history[c], equal_nan=True)
        for x, y in zip(a, b, strict=True)
        for c in x.history
        if not np.isnan(x.history[c]).all() or c in ("dead_fraction",)
    ) and all(
        torch.equal(x.state_dict[k], y.state_dict[k])
        for x, y in zip(a, b, strict=True)
        for k in x.state_dict
    )


@click.command()
@click.option("--rev", required=True, help="git revision of the engine to compare against")
@click.option("--runs", "n_runs", default=216, show_default=True)
@click.option("--epochs", default=3, show_default=True)
def main(rev: str, n_runs: int, epochs: int):
    torch.set_num_threads(1)
    old_engine = engine_at(rev)
    spec = DatasetSpec("quad2", 1000, (2.0, -1.0), False, 0.01, 2, 420, 0.7, (1.0,) * 2, (0.0,) * 2)
    split = generate(spec)
    for depth in (1, 3):
        runs = mixed_sweep(n_runs, epochs, depth, 10)
        datas = [split] * len(runs)
        same = identical(old_engine.train_runs(runs, datas), new_engine.train_runs(runs, datas))
        times = {"old": [], "new": []}
        for _ in range(5):
            for name, eng in (("old", old_engine), ("new", new_engine)):
                start = time.perf_counter()
                eng.train_runs(runs, datas)
                times[name].append(time.perf_counter() - start)
        old, new = np.median(times["old"]), np.median(times["new"])
        click.echo(
            f"depth {depth}, {n_runs} runs x {epochs} epochs: bit-identical {same}; "
            f"{rev} {old:.3f} s, working tree {new:.3f} s, ratio new/old {new / old:.3f}"
        )


if __name__ == "__main__":
    main()
