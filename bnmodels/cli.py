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
    """Print the MLflow UI link of each sweep: its landing view (the configurations of
    its latest execution compared), or its runs table before the view exists."""
    from bnmodels.tracking import store

    uri = store.default_tracking_uri(Path.cwd())
    if (path := store.sqlite_path(uri)) is not None and not path.exists():
        click.echo(f"no MLflow store yet at {path}: run `make run` first")
        return
    for name, url in sweep_links(uri, ui).items():
        click.echo(f"{name:32s} {url}")


def sweep_links(uri: str, ui: str) -> dict[str, str]:
    """{experiment name: UI link} of each sweep in the store at `uri`, by name: its landing
    view (`bnmodels.tracking.ui_view`), or its runs table before the view exists."""
    from mlflow import MlflowClient

    from bnmodels.tracking import store, ui_view

    exps = MlflowClient(uri).search_experiments(
        filter_string=f"name LIKE '{store.EXPERIMENT_PREFIX}%'"
    )
    out = {}
    for e in sorted(exps, key=lambda e: e.name):
        url = store.experiment_url(uri, e.experiment_id, ui)
        view = ui_view.TAG_PREFIX + ui_view.VIEW_KEY in e.tags
        out[e.name] = ui_view.view_url(url) if view else url
    return out


if __name__ == "__main__":
    main()
