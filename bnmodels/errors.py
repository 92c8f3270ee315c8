"""The expected failures of the pipeline: each says what is wrong and what to do.

A leaf module (no project imports), so that a stage's error handling (`clean_errors`)
does not make the stage depend on the whole package (dvc.yaml lists what each imports).
"""

from __future__ import annotations

import functools
import sys

import click


class ParamsError(ValueError):
    """Every problem found in a params file, one readable line each."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        n = len(errors)
        head = f"{n} problem{'s' if n > 1 else ''} in the parameters:"
        super().__init__("\n".join([head, *(f"  - {e}" for e in errors)]))


class StageError(RuntimeError):
    """A stage cannot run as asked (stale data, a missing device); says why and what to do."""


class TrackingError(RuntimeError):
    """The tracking store cannot be used or a logged run is incomplete; says which and why."""


def clean_errors(fn):
    """Expected failures (bad params, impossible data, an unusable tracking store) exit 2
    with their message and no traceback; anything else is a bug and keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ParamsError, TrackingError, StageError) as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)

    return wrapper
