"""The landing view's state: what MLflow's UI is told to show for a sweep.

The rendered page itself is checked in a real browser by `make ui-check`
(scripts/ui_check.py); these tests pin the state and its encoding, fast.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from pathlib import Path

import mlflow

from bnmodels.tracking import ui_view

VARYING = ["activation", "bn", "depth", "seed"]
REGRESSION = ["dead_fraction", "grad_std_l1", "test_mse", "train_mse", "weight_std_l1"]
CLASSIFICATION = ["test_accuracy", "test_ce", "train_accuracy", "train_ce", "weight_std_l1"]


def _state(metrics=REGRESSION, varying=VARYING, runs=160):
    return ui_view.view_state("depth", "abc123", varying, metrics, runs)


def test_configurations_are_groups_of_every_varying_key_but_the_seed_averaged():
    group = _state()["groupBy"]
    assert group["aggregateFunction"] == "average"
    assert group["groupByKeys"] == [
        {"mode": "param", "groupByData": k} for k in ("activation", "bn", "depth")
    ]
    assert _state(varying=["seed"])["groupBy"] is None  # one configuration: its runs


def test_the_charts_are_the_test_and_train_curves_the_runs_log_test_first():
    charts = _state()["compareRunCharts"]
    assert [c["metricKey"] for c in charts] == ["test_mse", "train_mse"]
    assert all(c["type"] == "LINE" and c["xAxisKey"] == "step" for c in charts)
    assert {c["scaleType"] for c in charts} == {"log"}
    charts = _state(CLASSIFICATION)["compareRunCharts"]
    assert [c["metricKey"] for c in charts] == [
        "test_accuracy",
        "train_accuracy",
        "test_ce",
        "train_ce",
    ]
    assert [c["scaleType"] for c in charts] == ["linear", "linear", "log", "log"]


def test_the_curves_have_their_own_first_section_and_the_other_metrics_stay_folded():
    state = _state()
    sections = state["compareRunSections"]
    assert [s["display"] for s in sections] == [True, False, False]
    assert [s["name"] for s in sections[1:]] == ["Model metrics", "System metrics"]
    assert {c["metricSectionId"] for c in state["compareRunCharts"]} == {sections[0]["uuid"]}
    assert state["isAccordionReordered"] is True


def test_the_view_holds_one_execution_every_run_drawn_and_axes_and_finals_as_columns():
    state = _state(runs=432)
    assert state["searchFilter"] == "tags.`mlflow.parentRunId` = 'abc123'"
    assert state["runsHiddenMode"] == "SHOW_ALL"  # MLflow's default draws 10 runs
    assert all(c["runsCountToCompare"] >= 432 for c in state["compareRunCharts"])
    assert (state["orderByKey"], state["orderByAsc"]) == ("params.`seed`", True)
    assert state["selectedColumns"] == [
        "params.`activation`",
        "params.`bn`",
        "params.`depth`",
        "params.`seed`",
        "attributes.`Dataset`",
        "metrics.`test_mse`",
        "metrics.`train_mse`",
    ]


def test_the_tag_is_mlflows_saved_view_envelope_with_a_deflated_state():
    state = _state()
    key, value = ui_view.view_tag(state, "depth: 16 configurations", 1_700_000_000_000)
    assert key == "mlflow.sharedViewState.compare"
    envelope = json.loads(value)
    assert envelope["name"] == "depth: 16 configurations"
    assert envelope["createdAt"] == 1_700_000_000_000
    assert envelope["state"].startswith("deflate;")
    packed = base64.b64decode(envelope["state"].removeprefix("deflate;"))
    assert json.loads(zlib.decompress(packed)) == state  # zlib: what the UI's pako inflates
    assert ui_view.read_view_tag(value) == state
    assert len(value) < 20_000  # MLflow's limit on an experiment tag's value


def test_the_link_opens_the_view_on_its_charts():
    url = "http://127.0.0.1:5000/#/experiments/4/runs?workflowType=machine_learning"
    assert ui_view.view_url(url) == f"{url}&viewStateShareKey=compare&compareRunsMode=CHART"


def _ui_bundle() -> str:
    js = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    return "\n".join(p.read_text(errors="replace") for p in js.glob("*.js"))


def test_the_installed_mlflow_ui_reads_every_field_the_view_sets():
    """Guards an MLflow upgrade: the field lists of the pinned UI's saved views (its
    `EXPERIMENT_PAGE_UI_STATE_FIELDS` and search facet keys), the tag prefix, the link
    parameter and the envelope, as the installed bundle spells them."""
    bundle = _ui_bundle()
    assert f'"{ui_view.TAG_PREFIX}"' in bundle and f'"{ui_view.SHARE_PARAM}"' in bundle
    assert "Invalid saved-view envelope" in bundle
    lists = re.findall(
        r'\["selectedColumns",(?:"\w+",?)+\]|\["searchFilter",(?:"\w+",?)+\]', bundle
    )
    known = {f for lst in lists for f in json.loads(lst)}
    assert {"compareRunCharts", "groupBy", "orderByKey"} <= known
    assert set(_state()) <= known
