"""The aggregate stage's figures drawn in forked workers (`bnmodels.report.drawing`): the
same bytes as drawn in process, whatever the workers; a dead worker is an error, not a
hang or a report with a missing figure."""

from __future__ import annotations

import os
from functools import partial

import numpy as np
import pytest

from bnmodels.errors import StageError
from bnmodels.report import plots
from bnmodels.report.build import Figures
from bnmodels.report.drawing import Drawing


def _figure(k: int):
    x = np.arange(1.0, 30.0)
    series = [plots.Series(f"run {k}", x, 1.0 / x**0.5 + k, 0.9 / x**0.5 + k, 1.1 / x**0.5 + k)]
    panel = plots.Panel(f"panel {k}", series)
    return plots.grid_figure([panel], ncols=1, xlabel="epoch", ylabel="loss", title=f"fig {k}")


def figures(n: int, **replace) -> Figures:
    makers = {f"f{k}.png": partial(_figure, k) for k in range(n)}
    return Figures({**makers, **replace})


@pytest.mark.parametrize("workers", [2, 3])
def test_figures_drawn_in_workers_are_the_bytes_drawn_in_process(workers):
    drawn = Drawing(figures(6), workers=workers).pngs()
    here = figures(6)
    assert list(drawn) == list(here)
    for name in here:
        assert drawn[name] == plots.png_bytes(here[name]), name
        assert drawn[name].startswith(b"\x89PNG")


def test_few_figures_or_one_core_draw_in_process():
    assert Drawing(figures(3), workers=2).pngs() == {}
    assert Drawing(figures(6), workers=1).pngs() == {}


def _die():
    os._exit(3)


def workers_of(drawing: Drawing) -> list:
    """The pool's worker processes, taken while it runs (its shutdown forgets them)."""
    procs = list(drawing.pool._processes.values())
    assert len(procs) == 2
    return procs


def test_a_worker_that_dies_is_an_error_naming_it():
    drawing = Drawing(figures(6, **{"f2.png": _die}), workers=2)
    procs = workers_of(drawing)
    with pytest.raises(StageError, match="a worker process died"):
        drawing.pngs()
    assert not any(p.is_alive() for p in procs)


def _fail():
    raise ValueError("no data to draw")


def test_a_figure_that_fails_raises_its_error_and_stops_the_workers():
    drawing = Drawing(figures(6, **{"f1.png": _fail}), workers=2)
    procs = workers_of(drawing)
    with pytest.raises(ValueError, match="no data to draw"):
        drawing.pngs()
    assert not any(p.is_alive() for p in procs)
