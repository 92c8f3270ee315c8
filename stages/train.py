"""Stage train@<sweep>: train every run of a sweep's plan, log it to MLflow, write tables.

Outputs are replaced all at once at the end: an interrupted or failed run leaves the
previous results of this sweep as they were (dvc.yaml marks them persist).
"""

import json
import subprocess
from pathlib import Path

import click
from tqdm import tqdm

from bnmodels import tracking
from bnmodels.cli import clean_errors
from bnmodels.config import load_params
from bnmodels.io import replace_dir
from bnmodels.results import history_frame, runs_frame
from bnmodels.sweep import load_plan_data, plan_hash, plan_runs, train_sweep


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
    plan = json.loads(Path(plan_file).read_text())
    runs = plan_runs(plan)
    splits = load_plan_data(plan, Path(processed))
    uri = tracking.default_tracking_uri(Path.cwd())
    tracking.ensure_store(uri)  # before training: a dead server fails fast, nothing lost

    with tqdm(total=len(runs), desc=f"train {sweep}", unit="run", leave=False) as bar:
        results = train_sweep(runs, splits, execution, progress=bar.update)
    tags = {"dvc_stage": f"train@{sweep}", "git_commit": git_commit(),
            "params_hash": plan_hash(plan)}  # fmt: skip
    in_features = {ds: s.x_train.shape[1] for (ds, _), s in splits.items()}
    _, run_ids = tracking.log_sweep(sweep, results, uri=uri, in_features=in_features, tags=tags)

    diagnostics = {r.config.run_key: r.final for r in results}
    replace_dir(out, {
        "runs.csv": runs_frame(results, run_ids).to_csv(index=False),
        "history.csv": history_frame(results).to_csv(index=False),
        "diagnostics.json": json.dumps(diagnostics, sort_keys=True) + "\n",
    })  # fmt: skip
    n_div = sum(r.diverged for r in results)
    click.echo(f"{sweep}: {len(results)} runs trained and logged ({n_div} diverged) -> {out}")


if __name__ == "__main__":
    main()
