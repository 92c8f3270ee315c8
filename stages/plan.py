"""Stage plan: validate all of params.yaml, then write each sweep's plan (its runs and data).

This is the gate before any training (SPEC 6): bad params stop here, with every problem
listed, before a train stage deletes or touches anything. A sweep's plan file is
byte-identical while its runs are, so DVC retrains exactly the sweeps that changed.
"""

from pathlib import Path

import click

from bnmodels.atomic import atomic_write_text
from bnmodels.errors import clean_errors
from bnmodels.experiment.plan import make_plans, plan_text
from bnmodels.shutdown import fast_exit
from bnmodels.study.load import load_study, undecidable


@click.command()
@click.option(
    "--params",
    "params_file",
    default="params.yaml",
    show_default=True,
    type=click.Path(exists=True, dir_okay=False),
)
@click.option(
    "--processed",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="processed data root (normalize stages)",
)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="folder of <sweep>.json plans"
)
@clean_errors
def main(params_file: str, processed: str, out: str):
    """Validate all of params.yaml (claims too), then write one plan per sweep."""
    study = load_study(params_file)
    plans = make_plans(study.params, Path(processed), file=params_file)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.json"):
        if old.stem not in plans:
            old.unlink()
    for name, plan in plans.items():
        atomic_write_text(out / f"{name}.json", plan_text(plan))
    click.echo(f"{len(plans)} sweeps, {sum(len(p['runs']) for p in plans.values())} runs planned")
    for line in undecidable(study):  # before any training: what the seeds cannot decide
        click.echo(f"warning: {line}", err=True)


if __name__ == "__main__":
    fast_exit()
    main()
