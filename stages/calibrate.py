"""Stage calibrate: the verdict pipeline on worlds with no true effect and with a planted
one, built from the calibration sweep's replicas (study/calibration.py), into
reports/calibration.csv, which the report shows.

A stage of its own, so that editing a claim does not rerun it. It depends on every
sweep's plans and runs (a pipeline without the calibration sweep writes an empty table
and says so), and keeps the digest of what it read, the calibration sweep's plan and
tables and the verdict rules' source, beside its output: when another sweep's retraining
reruns the stage, that digest is unchanged and the table stands (the calibration takes
30-50 s; the check, a few milliseconds).
"""

import hashlib
import json
from pathlib import Path

import click

import bnmodels.study
from bnmodels.atomic import atomic_write_bytes, atomic_write_text
from bnmodels.errors import clean_errors
from bnmodels.pools import available_cores
from bnmodels.shutdown import fast_exit
from bnmodels.study.calibration import CALIBRATION_COLUMNS, calibrate, passes
from bnmodels.study.prepared import SweepData, prepare
from bnmodels.training.tables import read_tables


def digest(files) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


@click.command()
@click.option("--plans", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--runs", "runs_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--sweep", default="aa_control", show_default=True, metavar="NAME", help="the calibration sweep"
)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--key", required=True, type=click.Path(dir_okay=False), help="its digest's file")
@clean_errors
def main(plans: str, runs_dir: str, sweep: str, out: str, key: str):
    """Write reports/calibration.csv: per claim kind, false decisions with no effect and
    power at the printed detectable effect."""
    plan, folder = Path(plans) / f"{sweep}.json", Path(runs_dir) / sweep
    if not plan.exists() or not folder.exists():
        header = ",".join(CALIBRATION_COLUMNS) + "\n"
        atomic_write_bytes(Path(out), header.encode())
        click.echo(f"no sweep {sweep!r} to calibrate the verdicts on: an empty table")
        return
    rules = sorted(Path(bnmodels.study.__file__).parent.glob("*.py"))
    key_now = digest([plan, *sorted(folder.glob("*.csv")), *rules, Path(__file__)])
    if Path(out).exists() and Path(key).exists() and Path(key).read_text() == key_now:
        click.echo(f"calibration on {sweep}: its runs and the rules are unchanged; kept")
        return
    axes = json.loads(plan.read_text())["axes"]
    runs, history = read_tables(folder)
    sw = prepare(sweep, SweepData(runs=runs, history=history, diagnostics={}, axes=axes))
    cal = calibrate(sw, workers=available_cores())
    csv = cal.to_csv(index=False, float_format="%.6g", lineterminator="\n")  # as reports/
    atomic_write_bytes(Path(out), csv.encode())
    atomic_write_text(Path(key), key_now)
    verdict = "passes" if passes(cal) else "FAILS (see the rows with passes=False)"
    click.echo(f"calibration of the verdicts on {sweep}: {len(cal)} rows, {verdict}")


if __name__ == "__main__":
    fast_exit()
    main()
