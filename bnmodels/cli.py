"""Command-line helpers: clean error messages for the stage scripts, and `links`."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from bnmodels.config import ParamsError


def clean_errors(fn):
    """Expected failures (bad params, impossible data, an unusable tracking store) exit 2
    with their message and no traceback; anything else is a bug and keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from bnmodels.store import TrackingError
        from bnmodels.sweep import StageError

        try:
            return fn(*args, **kwargs)
        except (ParamsError, TrackingError, StageError) as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)

    return wrapper


@click.group()
def main():
    """bnmodels helpers."""


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
