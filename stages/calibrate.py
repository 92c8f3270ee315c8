"""Stage calibrate: the verdict pipeline on worlds with no true effect and with a planted
one, built from the calibration sweep's replicas (study/calibration.py), into
reports/calibration.csv, which the report shows.

A stage of its own: it depends on the verdict rules and the calibration sweep's runs, not
on the claims, so editing a claim does not rerun it.
"""

import json
from pathlib import Path

import click

from bnmodels.atomic import atomic_write_bytes
from bnmodels.errors import clean_errors
from bnmodels.pools import available_cores
from bnmodels.shutdown import fast_exit
from bnmodels.study.calibration import calibrate, passes
from bnmodels.study.prepared import SweepData, prepare
from bnmodels.training.tables import read_tables


@click.command()
@click.option("--plan", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--runs", "runs_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@clean_errors
def main(plan: str, runs_dir: str, out: str):
    """Write reports/calibration.csv: per claim kind, false decisions with no effect and
    power at the printed detectable effect."""
    axes = json.loads(Path(plan).read_text())["axes"]
    runs, history = read_tables(Path(runs_dir))
    name = Path(runs_dir).name
    sw = prepare(name, SweepData(runs=runs, history=history, diagnostics={}, axes=axes))
    cal = calibrate(sw, workers=available_cores())
    csv = cal.to_csv(index=False, float_format="%.6g", lineterminator="\n")  # as reports/
    atomic_write_bytes(Path(out), csv.encode())
    verdict = "passes" if passes(cal) else "FAILS (see the rows with passes=False)"
    click.echo(f"calibration of the verdicts on {name}: {len(cal)} rows, {verdict}")


if __name__ == "__main__":
    fast_exit()
    main()
