"""The landing view of a sweep in the MLflow UI: its configurations compared, no clicks.

Why a saved view, and not another layout of the runs. MLflow 3's runs page already draws
what the report's figures show: grouped by params, a group's curve is the mean of its
runs with a min-max band, on the runs' own step metrics. What it lacked was the set-up: a
new user met one folded parent row and empty chart sections. MLflow 3.17's UI stores a
view (filter, sort, columns, charts, grouping) as an experiment tag
`mlflow.sharedViewState.<key>` whose value is an envelope `{name, createdAt, state}`,
`state` being the page's state as JSON, zlib-deflated and base64-encoded after
`deflate;` (the UI's own Save view writes exactly this; it reads it back on a
`?viewStateShareKey=<key>` link and lists it in its Views menu). So this module writes
one such view per sweep (key `compare`, overwritten by each execution of the sweep):

- filter: the children of the sweep's latest execution (`tags.mlflow.parentRunId`),
  so runs of earlier executions never mix into the means;
- grouped by every configuration key that varies except the seed, averaged: one line
  per configuration, mean over seeds with a min-max band;
- charts, in their own section: the test and train curves (`test_mse`, `train_mse`;
  `test_accuracy`, `train_accuracy`, `test_ce`, `train_ce` for classification), step =
  epoch, loss on a log axis; MLflow's generated charts of the other metrics stay in
  the folded "Model metrics" section below;
- table columns: the varying keys, the data set, the curves' final values;
- every run visible in the charts (not MLflow's default of the first 10), sorted by
  seed: MLflow's UI loads runs 100 at a time (`Load more` adds the next 100), and sorted
  so, the first page holds every configuration with its first seeds, never a part of
  the configurations.

The alternative, laying runs out flat or logging a run per configuration with its
seed-mean curves, would change what the store holds for every other reader (the
report's tables, `load_run_model`, resumption) to work around a UI default. The view
changes nothing but one experiment tag.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterable, Sequence

from bnmodels import columns

TAG_PREFIX = "mlflow.sharedViewState."  # MLflow UI's constant, 3.x
SHARE_PARAM = "viewStateShareKey"
VIEW_KEY = "compare"
# The curves a view charts, in this order, when the sweep's runs log them (SPEC 4)
CURVES = ("test_mse", "train_mse", "test_accuracy", "train_accuracy", "test_ce", "train_ce")
LOG_SCALE = columns.LOSSES
SECTION, MODEL_SECTION, SYSTEM_SECTION = "bnmodels-curves", "bnmodels-model", "bnmodels-system"


def _key(kind: str, name: str) -> str:
    """The UI's canonical column key: params.`bn`, metrics.`test_mse`."""
    return f"{kind}.`{name}`"


def curve_chart(metric: str, runs: int) -> dict:
    """A line chart card of one metric against the step (epoch), every group drawn."""
    return {
        "uuid": f"bnmodels-{metric}",
        "type": "LINE",
        "runsCountToCompare": max(runs, 10),  # the chart draws this many runs or groups
        "metricSectionId": SECTION,
        "deleted": False,
        "isGenerated": False,
        "metricKey": metric,
        "selectedMetricKeys": [metric],
        "lineSmoothness": 0,
        "xAxisScaleType": "linear",
        "scaleType": "log" if metric in LOG_SCALE else "linear",
        "range": {},
        "xAxisKey": "step",
        "selectedXAxisMetricKey": "",
        "yAxisKey": "metric",
        "yAxisExpressions": [],
        "ignoreOutliers": False,
        "useGlobalXaxisKey": False,
        "useGlobalLineSmoothing": True,
    }


def view_state(
    sweep: str,
    parent_run_id: str,
    varying: Sequence[str],
    metric_names: Iterable[str],
    runs: int,
) -> dict:
    """The experiment page's state (search facets and UI state, as MLflow's UI saves it)
    that compares one sweep execution's configurations: see the module doc.

    `varying`: the configuration keys that vary across the sweep (seed included, if it
    does); `metric_names`: the metrics its runs log; `runs`: how many runs it has.
    """
    names = set(metric_names)
    curves = [m for m in CURVES if m in names]
    axes = [k for k in varying if k != "seed"]
    section = {"display": True, "isReordered": False, "deleted": False, "isGenerated": False}
    return {
        # search facets
        "searchFilter": f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
        "orderByKey": _key("params", "seed") if "seed" in varying else "attributes.start_time",
        "orderByAsc": True,  # the UI fills the facets left out with its defaults
        # UI state
        "selectedColumns": [
            *(_key("params", k) for k in varying),
            "attributes.`Dataset`",
            *(_key("metrics", m) for m in curves),
        ],
        "columnOrder": [],
        "columnWidths": {},
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": [curve_chart(m, runs) for m in curves],
        "compareRunSections": [
            {**section, "uuid": SECTION, "name": f"{sweep}: mean over seeds, min-max band"},
            {**section, "uuid": MODEL_SECTION, "name": "Model metrics", "display": False},
            {**section, "uuid": SYSTEM_SECTION, "name": "System metrics", "display": False},
        ],
        "viewMaximized": False,
        "runListHidden": False,
        "isAccordionReordered": True,  # keep the curves' section first
        "groupBy": (
            {
                "aggregateFunction": "average",
                "groupByKeys": [{"mode": "param", "groupByData": k} for k in axes],
            }
            if axes
            else None
        ),
        "groupsExpanded": {},
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
        "globalLineChartConfig": {
            "xAxisKey": "step",
            "lineSmoothness": 0,
            "selectedXAxisMetricKey": "",
        },
        "chartsSearchFilter": "",
    }


def view_tag(state: dict, name: str, created_ms: int, key: str = VIEW_KEY) -> tuple[str, str]:
    """(experiment tag key, value) of a saved view: the UI's envelope, its state deflated."""
    packed = zlib.compress(json.dumps(state, separators=(",", ":")).encode())
    envelope = {
        "name": name,
        "createdAt": created_ms,
        "state": "deflate;" + base64.b64encode(packed).decode(),
    }
    return TAG_PREFIX + key, json.dumps(envelope)


def read_view_tag(value: str) -> dict:
    """The state of a saved view's tag value (the inverse of `view_tag`)."""
    state = json.loads(value)["state"]
    return json.loads(zlib.decompress(base64.b64decode(state.removeprefix("deflate;"))))


def view_url(experiment_url: str, key: str = VIEW_KEY) -> str:
    """The experiment page link that opens the view, on its charts."""
    sep = "&" if "?" in experiment_url else "?"
    return f"{experiment_url}{sep}{SHARE_PARAM}={key}&compareRunsMode=CHART"
