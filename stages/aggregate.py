"""Stage aggregate: the study report of every planned sweep, into reports/ (SPEC 5)."""

import json
import multiprocessing
import os
import shutil
import sys
from pathlib import Path

import click
import pandas as pd

from bnmodels.config import ParamsError, load_params
from bnmodels.io import atomic_write_bytes
from bnmodels.plots import png_bytes
from bnmodels.report import Report, SweepData, build_report

_report: Report | None = None  # shared with forked workers, read-only


def _render(name: str) -> bytes:
    return png_bytes(_report.figures[name])


def report_files(report: Report) -> dict[str, bytes]:
    """Report.files(), with the figures (most of the time) drawn on every core."""
    global _report
    names = list(report.figures)
    if len(names) < 4 or (os.cpu_count() or 1) < 2 or os.name != "posix":
        return report.files()
    _report = report
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(min(os.cpu_count(), 4)) as pool:
        pngs = dict(zip(names, pool.map(_render, names, chunksize=1), strict=True))
    files = report.files(figures=pngs)
    _report = None
    return files


def read_sweep(folder: Path, axes: dict) -> SweepData:
    return SweepData(
        runs=pd.read_csv(folder / "runs.csv", keep_default_na=False, na_values=[""]),
        history=pd.read_csv(folder / "history.csv"),
        diagnostics=json.loads((folder / "diagnostics.json").read_text()),
        axes=axes,
    )


@click.command()
@click.option("--plans", required=True, help="folder of <sweep>.json plans")
@click.option("--runs", "runs_dir", required=True, help="folder of <sweep>/ results")
@click.option("--out", required=True, help="reports folder")
@click.option("--params", "params_file", default="params.yaml", show_default=True,
              help="read for its claims (validated as the plan stage does)")  # fmt: skip
def main(plans: str, runs_dir: str, out: str, params_file: str):
    try:
        claims = list(load_params(params_file).claims.values())
    except ParamsError as e:  # as cli.clean_errors does, without importing torch and mlflow
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    sweeps = {}
    for plan_file in sorted(Path(plans).glob("*.json")):  # removed sweeps are left out
        plan = json.loads(plan_file.read_text())
        sweeps[plan["sweep"]] = read_sweep(Path(runs_dir) / plan["sweep"], plan["axes"])
    files = report_files(build_report(sweeps, claims))
    out = Path(out)
    for sub in ("figures", "plots"):  # regenerated whole: no stale figure survives
        shutil.rmtree(out / sub, ignore_errors=True)
    for rel, data in files.items():
        atomic_write_bytes(out / rel, data)
    click.echo(f"report of {len(sweeps)} sweeps: {out / 'report.md'} ({len(files)} files)")


if __name__ == "__main__":
    main()
