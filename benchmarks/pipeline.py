"""Where `dvc repro` of the defaults spends its time, from scratch: each stage's seconds,
the whole, the machine's load and the CPU time the hypervisor took (steal), for the
working tree and optionally an earlier commit, interleaved in rounds (this machine is
shared: compare runs of one invocation, never across days).

    PYTHONPATH=. python benchmarks/pipeline.py                         # the working tree
    PYTHONPATH=. python benchmarks/pipeline.py --against 487b0ae --rounds 2

Each variant is a fresh clone under a temporary folder (the working tree's uncommitted
files copied in), sharing this checkout's .venv; each round deletes its data, runs/,
MLflow store and DVC cache first, so every stage runs. A stage's seconds run from DVC's
"Running stage" line to the next stage's (so they include DVC's own work around it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ["data", "runs", "mlflow.db", "mlartifacts", ".dvc/cache", ".dvc/tmp"]


def steal_s() -> float:
    """CPU seconds taken from this machine by the hypervisor so far (all cores)."""
    fields = Path("/proc/stat").read_text().split("\n")[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else float("nan")


def clone(rev: str | None, where: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(where)], check=True)
    if rev:
        subprocess.run(["git", "-C", str(where), "checkout", "-q", rev], check=True)
    else:  # the working tree: its changed and new files too
        changed = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-m", "-o", "--exclude-standard"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for rel in changed:
            if (ROOT / rel).is_file():
                (where / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, where / rel)
    (where / ".venv").symlink_to(ROOT / ".venv")
    return where


def repro(folder: Path) -> tuple[float, list[tuple[str, float]], int]:
    """(seconds, [(stage, seconds)], exit code) of one `dvc repro` from scratch."""
    for rel in GENERATED:
        p = folder / rel
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    subprocess.run(["git", "checkout", "-q", "--", "reports", "dvc.lock"], cwd=folder)
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    start = time.perf_counter()
    starts = []
    with subprocess.Popen(
        ["dvc", "repro"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        for line in proc.stdout:
            if line.startswith("Running stage '"):
                starts.append((line.split("'")[1], time.perf_counter() - start))
    total = time.perf_counter() - start
    ends = [t for _, t in starts[1:]] + [total]
    return total, [(s, end - t) for (s, t), end in zip(starts, ends, strict=True)], proc.returncode


@click.command()
@click.option("--against", default=None, help="an earlier commit to time in the same rounds")
@click.option("--rounds", default=1, show_default=True)
def main(against: str | None, rounds: int):
    variants = {"working tree": None, **({against: against} if against else {})}
    with tempfile.TemporaryDirectory() as tmp:
        folders = {
            name: clone(rev, Path(tmp) / f"v{i}") for i, (name, rev) in enumerate(variants.items())
        }
        stage_times: dict[str, dict[str, list[float]]] = {name: {} for name in variants}
        for r in range(rounds):
            for name, folder in folders.items():
                load, steal = os.getloadavg()[0], steal_s()
                total, stages, rc = repro(folder)
                for stage, s in stages:
                    stage_times[name].setdefault(stage, []).append(s)
                print(
                    f"round {r + 1}, {name}: dvc repro {total:6.1f} s (exit {rc}; load before "
                    f"{load:.2f}; steal {steal_s() - steal:.1f} CPU-s)",
                    flush=True,
                )
        print("\nseconds per stage (fastest of the rounds):")
        names = list(variants)
        print(f"  {'stage':32s}" + "".join(f"{n[:14]:>16s}" for n in names))
        for stage in stage_times[names[0]]:
            row = [min(stage_times[n].get(stage, [float("nan")])) for n in names]
            print(f"  {stage:32s}" + "".join(f"{v:16.1f}" for v in row))


if __name__ == "__main__":
    main()
