"""Stage train@<sweep>: train every run of a sweep's plan, log it to MLflow, write tables.

All of it is `bnmodels.tracking.train_and_log` (shards on every core, or on a Ray
cluster when params.yaml's `execution` names one; the parent run opened first; forked
loggers beside the training; outputs replaced all at once, persisted by dvc.yaml).
"""

import json
from pathlib import Path

import click

from bnmodels.errors import clean_errors
from bnmodels.experiment.layout import columns_file
from bnmodels.experiment.params import load_params
from bnmodels.experiment.plan import load_plan_data, plan_hash, plan_runs
from bnmodels.shutdown import fast_exit
from bnmodels.tracking import sweep_run
from bnmodels.tracking.train_and_log import train_and_log
from bnmodels.tracking.writers import data_inputs, source_input


@click.command()
@click.argument("sweep")
@click.option(
    "--plan",
    "plan_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="the sweep's plan (plan stage)",
)
@click.option(
    "--processed", required=True, type=click.Path(file_okay=False), help="processed data folder"
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="folder for runs.csv, history.csv, diagnostics.json",
)
@click.option(
    "--params",
    "params_file",
    default="params.yaml",
    show_default=True,
    type=click.Path(exists=True, dir_okay=False),
    help="read for its execution section, and where each data set comes from",
)
@clean_errors
def main(sweep: str, plan_file: str, processed: str, out: str, params_file: str):
    """Train every run of SWEEP's plan, log each to MLflow, write the sweep's tables."""
    params = load_params(params_file)
    plan = json.loads(Path(plan_file).read_text())
    sources = {}  # where each data set comes from: a run's lineage in MLflow
    for name in {key.split("/")[0] for key in plan["data_md5"]}:
        recorded = columns_file(processed, name)  # a file data set's, by its read stage
        columns = json.loads(recorded.read_text()) if recorded.exists() else None
        sources[name] = source_input(params.datasets[name], columns)
    done = train_and_log(
        sweep,
        plan_runs(plan),
        load_plan_data(plan, Path(processed)),
        execution=params.execution,
        tags={"params_hash": plan_hash(plan), **sweep_run.dvc_experiment_tags()},
        inputs=data_inputs(plan["data_md5"], processed, sources),
        probes=plan.get("probes", False),
        out=out,
        progress=True,
    )
    n_div = sum(r.diverged for r in done.results)
    click.echo(f"{sweep}: {len(done.results)} runs trained and logged ({n_div} diverged) -> {out}")


if __name__ == "__main__":
    fast_exit()
    main()
