"""The `bnmodels` command: links to each sweep's runs in the MLflow UI, and the version."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
@click.version_option(package_name="bnmodels")
def main():
    """Batch Normalization experiments, tracked (run the pipeline with `dvc repro`)."""


@main.command()
@click.option("--ui", default="http://127.0.0.1:5000", show_default=True)
def links(ui: str):
    """Print the MLflow UI link of each sweep's experiment (runs table view)."""
    from mlflow import MlflowClient

    from bnmodels import store

    uri = store.default_tracking_uri(Path.cwd())
    if (path := store.sqlite_path(uri)) is not None and not path.exists():
        click.echo(f"no MLflow store yet at {path}: run `make run` first")
        return
    exps = MlflowClient(uri).search_experiments(
        filter_string=f"name LIKE '{store.EXPERIMENT_PREFIX}%'"
    )
    for e in sorted(exps, key=lambda e: e.name):
        click.echo(f"{e.name:32s} {store.experiment_url(uri, e.experiment_id, ui)}")


if __name__ == "__main__":
    main()
