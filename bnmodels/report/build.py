"""The study report as data: Markdown, figures, summary tables, claims, metrics and plot
tables.

`build_report(sweeps, claims)` takes each sweep's tables (runs.csv, history.csv,
diagnostics.json as read by the aggregate stage, and the sweep's axes) and the claims of
params.yaml, and returns a `Report`; `Report.files()` gives every output as bytes under
paths relative to `reports/`, for the stage to write. Nothing here touches the file
system, and the same input gives the same bytes (no timestamps, fixed orders, fixed float
formats). The parts live in modules named for them: prepared (a sweep's tables),
claim_eval (claims), stats, figures, markdown, exp_outputs (metrics.json and the plot
tables, what DVC compares across experiments).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure

from bnmodels.report import markdown, plots
from bnmodels.report.claim_figures import claim_figures
from bnmodels.report.claims_section import calibration_markdown, claims_markdown
from bnmodels.report.dvc_outputs import curve_tables, headline_metrics
from bnmodels.report.figures import figures as sweep_figures
from bnmodels.report.mechanisms import mechanisms_markdown
from bnmodels.report.record_section import (
    changes_markdown,
    limits_markdown,
    sensitivity_markdown,
)
from bnmodels.report.transfer_section import transfer_markdown
from bnmodels.study.calibration import CALIBRATION_COLUMNS
from bnmodels.study.cells import cells_frame
from bnmodels.study.claim import Claim
from bnmodels.study.prepared import SweepData, prepare, summary
from bnmodels.study.registry import Registry
from bnmodels.study.sensitivity import sensitivity
from bnmodels.study.verdicts import ClaimResult, evaluate

__all__ = ["Report", "SweepData", "build_report", "claims_frame", "csv_bytes"]
CLAIM_COLUMNS = [
    "id",
    "kind",
    "sweep",
    "metric",
    "scale",
    "expect",
    "margin",
    "estimate",
    "ci_low",
    "ci_high",
    "p",  # the exact p (kept under its first name: scripts read it)
    "p_exact",
    "p_holm",
    "level",
    "needed",
    "n",
    "k_agree",
    "mde",
    "primary",
    "n_dropped",
    "n_failed",
    "verdict",
    "scope",
    "effect",
    "says",
    "source",
    "comparison",
]


class Figures(Mapping[str, Figure]):
    """Figures by file name, in sorted order, each drawn on first access.

    The names (and the data behind each figure) are known without drawing, so the
    Markdown and the tables cost no rendering.
    """

    def __init__(self, makers: Mapping[str, Callable[[], Figure]]):
        self._makers = dict(sorted(makers.items()))
        self._made: dict[str, Figure] = {}

    def __getitem__(self, name: str) -> Figure:
        if name not in self._made:
            self._made[name] = self._makers[name]()
        return self._made[name]

    def __iter__(self):
        return iter(self._makers)

    def __len__(self) -> int:
        return len(self._makers)


@dataclass
class Report:
    markdown: str
    figures: Figures  # file name under figures/ -> figure
    summary: pd.DataFrame  # one row per sweep x configuration (seed excluded)
    claims: pd.DataFrame  # one row per judged claim
    cells: pd.DataFrame  # one row per claim and cell it averages over
    calibration: pd.DataFrame  # the calibrate stage's table (written by that stage)
    metrics: dict  # JSON-able headline numbers (DVC metrics)
    plots: dict[str, pd.DataFrame]  # path under plots/, no .csv -> table (DVC plots)

    def files(self, figures: Mapping[str, bytes] | None = None) -> dict[str, bytes]:
        """Every output, keyed by its path relative to `reports/`, in sorted order.
        `figures` may hold PNG bytes already drawn (by name); the others are drawn here."""
        figures = figures or {}
        out = {
            "report.md": self.markdown.encode(),
            "summary.csv": csv_bytes(self.summary),
            "claims.csv": csv_bytes(self.claims),
            "claim_cells.csv": csv_bytes(self.cells),
            "metrics.json": (json.dumps(self.metrics, indent=2, sort_keys=True) + "\n").encode(),
        }
        out.update(
            {
                f"figures/{k}": figures.get(k) or plots.png_bytes(self.figures[k])
                for k in self.figures
            }
        )
        out.update({f"plots/{k}.csv": csv_bytes(t) for k, t in self.plots.items()})
        return dict(sorted(out.items()))


def calibrate_empty() -> pd.DataFrame:
    return pd.DataFrame(columns=CALIBRATION_COLUMNS)


def csv_bytes(df: pd.DataFrame) -> bytes:
    """CSV with 6 significant digits, NaN as empty: byte-stable across platforms."""
    return df.to_csv(index=False, float_format="%.6g", lineterminator="\n").encode()


def claims_frame(results: Sequence[ClaimResult]) -> pd.DataFrame:
    """reports/claims.csv: one row per judged claim (other tools read these names)."""
    rows = [
        {
            "id": r.claim.id,
            "kind": r.claim.kind,
            "sweep": r.claim.sweep,
            "metric": r.claim.metric.name,
            "scale": r.claim.metric.scale,
            "expect": r.claim.expect,
            "margin": r.claim.margin if r.claim.expect == "same" else None,
            "estimate": r.estimate,
            "ci_low": r.ci_low,
            "ci_high": r.ci_high,
            "p": r.p,
            "p_exact": r.p,
            "p_holm": r.p_holm,
            "level": r.level,
            "needed": r.needed,
            "n": r.n,
            "k_agree": r.k_agree,
            "mde": r.mde,
            "primary": r.claim.primary,
            "n_dropped": r.n_dropped,
            "n_failed": r.n_failed,
            "verdict": r.verdict,
            "scope": r.scope.kind,
            "effect": r.effect,
            "says": r.claim.says,
            "source": r.claim.source,
            "comparison": r.comparison,
        }
        for r in results
    ]
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


# ---------------------------------------------------------------------------


def build_report(
    sweeps: Mapping[str, SweepData],
    claims: Sequence[Claim] = (),
    on_figures: Callable[[Figures], None] | None = None,
    registry: Registry | None = None,
    calibration: pd.DataFrame | None = None,
) -> Report:
    """The whole report from every sweep's tables and the claims judged on them; sections
    follow the mapping's order. A claim whose sweep is absent is listed as not judged.
    `on_figures` gets the sweeps' figures (not drawn yet) as soon as they are known, before
    the claims are judged: the aggregate stage starts drawing them on its other cores.
    `registry`: when each claim was fixed (study/registry.py); the claims' `primary` must
    already be what it proves. `calibration`: the calibrate stage's table, shown."""
    prepared = {name: prepare(name, data) for name, data in sweeps.items()}
    per_sweep = {name: sweep_figures(sw) for name, sw in prepared.items()}
    sweep_figs = {k: f for figs in per_sweep.values() for k, f in figs.items()}
    if on_figures is not None:
        on_figures(Figures(sweep_figs))
    summaries = {name: summary(sw) for name, sw in prepared.items()}
    summary_df = pd.concat(summaries.values(), ignore_index=True) if summaries else pd.DataFrame()
    results = evaluate(claims, prepared)
    figures = Figures({**sweep_figs, **(claim_figures(results) if results else {})})
    calibration_df = calibration if calibration is not None else calibrate_empty()
    not_judged = [c.id for c in claims if c.sweep not in prepared]
    sections = []
    for name, sw in prepared.items():
        ids = [f"`{r.claim.id}`" for r in results if r.claim.sweep == name]
        sections.append(markdown.sweep_markdown(sw, summaries[name], list(per_sweep[name]), ids))
    toc = " · ".join(f"[{n}](#sweep-{n.lower().replace('.', '')})" for n in prepared)
    md = (
        "\n".join(
            [
                "# Batch Normalization in small networks: the course's claims, tested",
                "",
                "Generated by the aggregate stage from `runs/<sweep>/` and the `claims` of "
                "params.yaml; every number below is computed from them. Sweeps: "
                + (toc or "none")
                + ".",
                "",
                "## Claims",
                "",
                limits_markdown(prepared),
                "",
                claims_markdown(results, not_judged),
                "",
                sensitivity_markdown(sensitivity(results, prepared)),
                "",
                transfer_markdown(results, prepared),
                changes_markdown(
                    registry or Registry(),
                    [c.id for c in claims],
                    [c.id for c in claims if c.primary],
                ),
                "",
                "## Method",
                "",
                markdown.METHODS,
                "",
                calibration_markdown(calibration_df),
                "",
                mechanisms_markdown(results),
                *sections,
            ]
        ).rstrip()
        + "\n"
    )
    claims_table = claims_frame(results)
    return Report(
        markdown=md,
        figures=figures,
        summary=summary_df,
        claims=claims_table,
        cells=cells_frame([(r.claim.id, list(r.cells)) for r in results]),
        calibration=calibration_df,
        metrics=headline_metrics(claims_table, summary_df),
        plots={k: t for sw in prepared.values() for k, t in curve_tables(sw).items()},
    )
