"""Stage aggregate: the study report of every planned sweep, into reports/ (SPEC 5).

The claims of params.yaml are judged here: editing one reruns this stage only.
"""

import json
import multiprocessing
import os
import shutil
from pathlib import Path

import click

from bnmodels.atomic import atomic_write_bytes
from bnmodels.errors import StageError, clean_errors
from bnmodels.report.build import Report, SweepData, build_report
from bnmodels.report.plots import png_bytes
from bnmodels.study.load import load_study
from bnmodels.training.tables import read_tables


def _render_part(report: Report, names: list[str], conn) -> None:
    conn.send({name: png_bytes(report.figures[name]) for name in names})
    conn.close()


def report_files(report: Report) -> dict[str, bytes]:
    """Report.files(), with the figures drawn on every core (up to 4): each forked
    worker inherits the report and sends back the PNG bytes of its share of the names."""
    names = list(report.figures)
    workers = min(os.cpu_count() or 1, 4)
    if len(names) < 4 or workers < 2 or os.name != "posix":
        return report.files()
    ctx = multiprocessing.get_context("fork")
    jobs = []
    for part in (names[i::workers] for i in range(workers)):
        receive, send = ctx.Pipe(duplex=False)
        process = ctx.Process(target=_render_part, args=(report, part, send))
        process.start()
        send.close()
        jobs.append((process, receive))
    pngs = {}
    for process, receive in jobs:  # receive before joining: a full pipe blocks its writer
        try:
            pngs.update(receive.recv())
        except EOFError:
            process.join()
            raise StageError(
                f"drawing figures failed in a worker (exit {process.exitcode})"
            ) from None
        process.join()
    return report.files(figures=pngs)


def read_sweep(folder: Path, axes: dict) -> SweepData:
    runs, history = read_tables(folder)
    return SweepData(
        runs=runs,
        history=history,
        diagnostics=json.loads((folder / "diagnostics.json").read_text()),
        axes=axes,
    )


@click.command()
@click.option(
    "--plans",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="folder of <sweep>.json plans (plan stage)",
)
@click.option(
    "--runs",
    "runs_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="folder of <sweep>/ results (train stages)",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="reports folder")
@click.option(
    "--params",
    "params_file",
    default="params.yaml",
    show_default=True,
    type=click.Path(exists=True, dir_okay=False),
    help="read for its claims (validated as the plan stage does)",
)
@clean_errors
def main(plans: str, runs_dir: str, out: str, params_file: str):
    """Write the report (claims table, figures, tables, metrics) of every planned sweep."""
    claims = list(load_study(params_file).claims.values())
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
