"""Stage train@<sweep>: train every run of a sweep's plan, log it to MLflow, write tables.

The sweep's parent MLflow run is opened before training, so that an interruption
(Ctrl-C, SIGTERM) or a failure anywhere marks it KILLED or FAILED; the next run of the
stage resumes it (`bnmodels.tracking.sweep_run`). Each trained group is logged by forked processes
(`execution.log_workers`) while the next group trains: MLflow's client is Python that
would only take turns with the training for the GIL in a thread.
Outputs are replaced all at once at the end: an interrupted or failed run leaves this
sweep's previous results as they were (dvc.yaml marks them persist).
"""

import json
import subprocess
import time
from pathlib import Path

import click
from tqdm import tqdm

from bnmodels.atomic import replace_dir
from bnmodels.errors import clean_errors
from bnmodels.experiment.params import load_params
from bnmodels.experiment.plan import load_plan_data, plan_hash, plan_runs
from bnmodels.tracking import store, sweep_run
from bnmodels.tracking.workers import ForkedLogger, log_workers
from bnmodels.tracking.writers import data_inputs
from bnmodels.training.sweep import resolve_device, train_sweep
from bnmodels.training.tables import history_frame, runs_frame

LOG_CHUNK = sweep_run.CHUNK  # runs per logging task


def now_ms() -> int:
    return int(time.time() * 1000)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


@click.command()
@click.argument("sweep")
@click.option("--plan", "plan_file", required=True, help="the sweep's plan (plan stage)")
@click.option("--processed", required=True, help="processed data folder")
@click.option("--out", required=True, help="folder for runs.csv, history.csv, diagnostics.json")
@click.option(
    "--params",
    "params_file",
    default="params.yaml",
    show_default=True,
    help="read for its execution section only",
)
@clean_errors
def main(sweep: str, plan_file: str, processed: str, out: str, params_file: str):
    execution = load_params(params_file).execution
    resolve_device(execution.device)  # before any MLflow run opens
    plan = json.loads(Path(plan_file).read_text())
    runs = plan_runs(plan)
    splits = load_plan_data(plan, Path(processed))
    in_features = {ds: s.x_train.shape[1] for (ds, *_), s in splits.items()}
    uri = store.default_tracking_uri(Path.cwd())
    store.check_reachable(uri)  # before training: a dead server fails fast; creates SQLite's
    tags = {
        "dvc_stage": f"train@{sweep}",
        "mlflow.source.git.commit": git_commit(),
        "params_hash": plan_hash(plan),
        **sweep_run.dvc_experiment_tags(),
    }
    workers = log_workers(execution.log_workers, uri, execution.threads)

    bars = {
        k: tqdm(total=len(runs), desc=f"{k} {sweep}", unit="run", position=i, leave=False)
        for i, k in enumerate(("train", "log"))
    }
    with (
        sweep_run.sigterm_as_exit(),
        sweep_run.open_sweep_run(
            sweep,
            uri=uri,
            tags=tags,
            params=sweep_run.varying_params(runs),
            retry_s=execution.log_retry_s,
            inputs=data_inputs(plan["data_md5"], processed),
        ) as parent,
        ForkedLogger(parent, in_features, workers) as logger,
    ):
        started = [now_ms()]  # when the group being trained started

        def log(results):  # each group as soon as it is trained, in chunks
            end = now_ms()
            bars["train"].update(len(results))
            for i in range(0, len(results), LOG_CHUNK):
                logger.submit(results[i : i + LOG_CHUNK], started[0], end)
            bars["log"].update(logger.poll())
            started[0] = now_ms()

        probes = plan.get("probes", False)
        results = train_sweep(runs, splits, execution, on_results=log, probes=probes)
        history = history_frame(results)
        # While the loggers finish: the sweep's tables on the parent run. Not the report's
        # curve figures: drawing them here took 46 of 84 s of a 432-run sweep's stage (2
        # cores); the aggregate stage draws them, and MLflow charts the children's curves.
        parent.log_texts(
            {
                "history.csv": history.to_csv(index=False),
                "diagnostics.json": diagnostics_json(results),
            }
        )
        run_ids = logger.close()
        bars["log"].update(len(run_ids) - bars["log"].n)
        parent.log_view(runs, sweep_run.metric_names(results))  # the UI's landing view
    for bar in bars.values():
        bar.close()
    write(sweep, results, history, run_ids, out)


def diagnostics_json(results) -> str:
    """Each run's end-of-training diagnostics (BN running statistics, last gradients)."""
    return json.dumps({r.config.run_key: r.final for r in results}, sort_keys=True) + "\n"


def write(sweep: str, results, history, run_ids: dict[str, str], out: str) -> None:
    """runs.csv, history.csv and diagnostics.json, replacing the folder all at once."""
    replace_dir(
        out,
        {
            "runs.csv": runs_frame(results, run_ids).to_csv(index=False),
            "history.csv": history.to_csv(index=False),
            "diagnostics.json": diagnostics_json(results),
        },
    )
    n_div = sum(r.diverged for r in results)
    click.echo(f"{sweep}: {len(results)} runs trained and logged ({n_div} diverged) -> {out}")


if __name__ == "__main__":
    main()
