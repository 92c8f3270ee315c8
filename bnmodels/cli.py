"""What every stage script shares: expected failures become one clean message."""

from __future__ import annotations

import functools
import sys

import click

from bnmodels.config import ParamsError


def clean_errors(fn):
    """Expected failures (bad params, impossible data) exit 2 with their message and no
    traceback; anything else is a bug and keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ParamsError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)

    return wrapper
