"""The report's figures drawn on every core while the rest of the report is built.

Drawing is most of the aggregate stage's work: 64 figures of the default sweeps cost
about 33 s of one core (8 s making the axes and lines, 25 s rendering them; matplotlib's
ticks and constrained layout, not pixels, measured with cProfile), against about 6 s for
everything else. `Drawing(figures)` forks up to 4 workers (`bnmodels.pools`), which
inherit the figures' makers with their data and draw one figure at a time as they free
up (figures differ threefold in cost), while the caller goes on judging claims and
writing Markdown; `pngs()` collects the PNG bytes. Only names and bytes cross the pipes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from matplotlib.figure import Figure

from bnmodels.errors import StageError
from bnmodels.pools import available_cores, finishing, fork_pool, kill_pool
from bnmodels.report.plots import png_bytes

MAX_WORKERS = 4
_FIGURES: Mapping[str, Figure] = {}  # what forked workers draw from (set before forking)


def _draw(name: str) -> bytes:
    return png_bytes(_FIGURES[name])


class Drawing:
    """Figures being drawn in forked workers (none where there are fewer than 4 figures,
    one core, or no fork: then `pngs()` is empty and `Report.files` draws them)."""

    def __init__(self, figures: Mapping[str, Figure], workers: int | None = None):
        global _FIGURES
        workers = workers or min(available_cores(), MAX_WORKERS)
        self.pool, self.futures = None, {}
        if len(figures) < 4 or workers < 2 or os.name != "posix":
            return
        _FIGURES = figures
        self.pool = fork_pool(workers)
        try:
            self.futures = {name: self.pool.submit(_draw, name) for name in figures}
        except BaseException:
            self.stop()
            raise

    def pngs(self) -> dict[str, bytes]:
        """{figure name: PNG bytes}, once every worker is done; the workers are killed if
        anything fails or interrupts the wait."""
        if self.pool is None:
            return {}
        from concurrent.futures.process import BrokenProcessPool

        try:
            with finishing(self.pool):
                return {name: future.result() for name, future in self.futures.items()}
        except BrokenProcessPool:
            raise StageError("drawing the figures failed: a worker process died") from None

    def stop(self) -> None:
        if self.pool is not None:
            kill_pool(self.pool)
