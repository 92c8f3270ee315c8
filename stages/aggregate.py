"""Stage aggregate: the study report of every planned sweep, into reports/ (SPEC 5).

The claims of params.yaml are judged here: editing one reruns this stage only.
"""

import json
from pathlib import Path

import click
import pandas as pd

from bnmodels.atomic import atomic_write_bytes, replace_dir
from bnmodels.errors import clean_errors
from bnmodels.experiment.checks import read_yaml
from bnmodels.report.build import SweepData, build_report
from bnmodels.report.drawing import Drawing
from bnmodels.shutdown import fast_exit
from bnmodels.study import registry as reg
from bnmodels.study.load import load_study
from bnmodels.training.tables import read_tables


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
@click.option(
    "--registry",
    "registry_file",
    default="registry.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="when each claim was fixed (bnmodels registry); absent: every claim exploratory",
)
@click.option(
    "--calibration",
    "calibration_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="reports/calibration.csv of the calibrate stage, shown in the report",
)
@clean_errors
def main(
    plans: str,
    runs_dir: str,
    out: str,
    params_file: str,
    registry_file: str,
    calibration_file: str | None,
):
    """Write the report (claims table, figures, tables, metrics) of every planned sweep."""
    registry = reg.from_dict(read_yaml(registry_file) if Path(registry_file).exists() else None)
    raw_claims = read_yaml(params_file).get("claims") or {}
    claims = reg.apply(list(load_study(params_file).claims.values()), raw_claims, registry)
    sweeps = {}
    for plan_file in sorted(Path(plans).glob("*.json")):  # removed sweeps are left out
        plan = json.loads(plan_file.read_text())
        sweeps[plan["sweep"]] = read_sweep(Path(runs_dir) / plan["sweep"], plan["axes"])
    drawing = []  # the figures start drawing on every core once known (report.drawing)
    try:
        report = build_report(
            sweeps,
            claims,
            on_figures=lambda f: drawing.append(Drawing(f)),
            registry=registry,
            calibration=pd.read_csv(calibration_file) if calibration_file else None,
        )
        files = report.files(figures=drawing[0].pngs() if drawing else None)
    except BaseException:
        for d in drawing:
            d.stop()
        raise
    out = Path(out)
    for sub in ("figures", "plots"):  # each replaced whole: no stale figure survives, and
        part = {
            rel[len(sub) + 1 :]: data for rel, data in files.items() if rel.startswith(f"{sub}/")
        }
        replace_dir(out / sub, part)  # an interrupted stage leaves the old one
    for rel, data in files.items():
        if "/" not in rel:
            atomic_write_bytes(out / rel, data)
    click.echo(f"report of {len(sweeps)} sweeps: {out / 'report.md'} ({len(files)} files)")


if __name__ == "__main__":
    fast_exit()
    main()
