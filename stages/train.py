"""Stage train@<sweep>: train every run of a sweep's plan, log it to MLflow, write tables.

The sweep's parent MLflow run is opened before training, so that an interruption
(Ctrl-C, SIGTERM) or a failure anywhere marks it, and its open child, KILLED or FAILED.
Each trained group is logged by a forked process while the next group trains: MLflow's
SQL store spends ~40 ms of Python per run, which in a thread would only take turns with
the training for the GIL.
Outputs are replaced all at once at the end: an interrupted or failed run leaves this
sweep's previous results as they were (dvc.yaml marks them persist).
"""

import json
import subprocess
from pathlib import Path

import click
from tqdm import tqdm

from bnmodels import tracking
from bnmodels.errors import clean_errors
from bnmodels.io import replace_dir
from bnmodels.params import load_params
from bnmodels.plan import load_plan_data, plan_hash, plan_runs
from bnmodels.results import history_frame, runs_frame
from bnmodels.sweep import resolve_device, train_sweep

LOG_CHUNK = 32  # runs per logging task: an interruption waits for at most one chunk


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
@click.option("--params", "params_file", default="params.yaml", show_default=True,
              help="read for its execution section only")  # fmt: skip
@clean_errors
def main(sweep: str, plan_file: str, processed: str, out: str, params_file: str):
    execution = load_params(params_file).execution
    resolve_device(execution.device)  # before any MLflow run opens
    plan = json.loads(Path(plan_file).read_text())
    runs = plan_runs(plan)
    splits = load_plan_data(plan, Path(processed))
    in_features = {ds: s.x_train.shape[1] for (ds, _), s in splits.items()}
    uri = tracking.default_tracking_uri(Path.cwd())
    tracking.check_reachable(uri)  # before training: a dead server fails fast
    tracking.ensure_store(uri)
    tags = {"dvc_stage": f"train@{sweep}", "mlflow.source.git.commit": git_commit(),
            "params_hash": plan_hash(plan)}  # fmt: skip

    bars = {k: tqdm(total=len(runs), desc=f"{k} {sweep}", unit="run", position=i, leave=False)
            for i, k in enumerate(("train", "log"))}  # fmt: skip
    with (
        tracking.sigterm_as_exit(),
        tracking.open_sweep_run(
            sweep, uri=uri, tags=tags, params=tracking.varying_params(runs)
        ) as parent,  # fmt: skip
        tracking.ForkedLogger(parent, in_features) as logger,
    ):

        def log(results):  # each group as soon as it is trained, in chunks
            bars["train"].update(len(results))
            for i in range(0, len(results), LOG_CHUNK):
                logger.submit(results[i : i + LOG_CHUNK])
            bars["log"].update(logger.poll())

        probes = plan.get("probes", False)
        results = train_sweep(runs, splits, execution, on_results=log, probes=probes)
        history = history_frame(results)
        # While the logger finishes: the sweep's curves, on the parent run.
        parent.log_figures(sweep_figures(sweep, results, history, plan["axes"]))
        run_ids = logger.close()
        bars["log"].update(len(run_ids) - bars["log"].n)
    for bar in bars.values():
        bar.close()
    write(sweep, results, history, run_ids, out)


def sweep_figures(sweep: str, results, history, axes: dict) -> dict:
    """The report's train and test curves of this sweep (mean and spread over seeds)."""
    from bnmodels.report import SweepData, build_report

    data = SweepData(runs_frame(results), history, {}, axes)
    figures = build_report({sweep: data}).figures  # drawn lazily: only these are drawn
    return {n.removesuffix(".png"): figures[n] for n in figures if "_curves" in n}


def write(sweep: str, results, history, run_ids: dict[str, str], out: str) -> None:
    """runs.csv, history.csv and diagnostics.json, replacing the folder all at once."""
    diagnostics = {r.config.run_key: r.final for r in results}
    replace_dir(out, {
        "runs.csv": runs_frame(results, run_ids).to_csv(index=False),
        "history.csv": history.to_csv(index=False),
        "diagnostics.json": json.dumps(diagnostics, sort_keys=True) + "\n",
    })  # fmt: skip
    n_div = sum(r.diverged for r in results)
    click.echo(f"{sweep}: {len(results)} runs trained and logged ({n_div} diverged) -> {out}")


if __name__ == "__main__":
    main()
