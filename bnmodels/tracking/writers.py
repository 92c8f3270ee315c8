"""Child runs as records, and the two ways of writing them into an MLflow store.

What a child run holds (`child_run`): its configuration (`RunConfig.as_dict`) as params;
`train_mse` and `test_mse` at every epoch as step metrics (the curves of the UI); each per-layer
diagnostic (`weight_std_l<i>`, `grad_std_l<i>`, `dead_fraction`) once, its final value at
its epoch (sortable and comparable in the runs table; every epoch of them is in the
parent's `history.csv`); tags; the real start and end of its training; its data sets as
run inputs (`DataInput`: the processed file's md5 from the plan, train and test); its
weights as `model.pt` (`bnmodels.tracking.weights`). About 90 values a run, where logging
every column at every epoch cost 280-600.

Writers, measured on the 2-core machine (SQLite, 480 values a run): MLflow's client
costs ~45 ms a run, three transactions (create_run, log_batch, set_terminated) each
through SQLAlchemy's ORM, ~0.06 ms a metric row. `SqlBulkWriter` writes a chunk of runs
into the same tables in one transaction with SQLAlchemy Core (see its docstring for the
figures); `ClientWriter` uses the public client, for tracking servers (their REST API
takes one run per request).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bnmodels import columns
from bnmodels.experiment.config import DataSpec, FileSpec, RunConfig
from bnmodels.experiment.layout import data_file
from bnmodels.tracking.store import env, retrying

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from bnmodels.training.result import RunResult

MODEL_FILE = "model.pt"  # run-relative artifact path of the weights
# Every epoch: the curves users compare (SPEC 4's metrics of either kind of run, and the
# landscape probes of a sweep with probes); other history columns: final value only.
STEP_METRICS = columns.METRICS
STEP_METRICS += ("probe_loss_range", "probe_grad_change", "probe_beta")
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
CONTEXT_TAG = "mlflow.data.context"  # what MLflow's UI shows beside a data set's name


@dataclass(frozen=True)
class DataInput:
    """One data set of a run, as `mlflow.log_input` records it (a row of the UI's Dataset
    column): the processed file both splits come from, named per split so that the train
    and test inputs of one file stay two inputs (MLflow keeps one per name and digest)."""

    name: str  # "quad2/zscore/train"
    digest: str  # md5 of the processed file: the plan's data_md5
    source: str  # MLflow's JSON of a local file source
    context: str  # "train" or "test" (or "source": where the data set comes from)
    source_type: str = "local"
    profile: str | None = None  # JSON shown in the UI beside the data set (a file's columns)


def data_inputs(
    data_md5: Mapping[str, str],
    processed: str | Path,
    sources: Mapping[str, DataInput] | None = None,
) -> dict[str, tuple]:
    """Each split of a plan's `data_md5` (`<data set>/<normalization>`, and `/draw<d>` for
    a draw d > 0: `plan.data_name`), by that name: its train and test inputs, and the
    input its data set came from (`source_input`), when `sources` has it."""
    out = {}
    for name, md5 in data_md5.items():
        ds, norm, *draw = name.split("/")
        d = int(draw[0].removeprefix("draw")) if draw else 0
        source = json.dumps({"uri": data_file(processed, ds, norm, d).as_posix()})
        pair = tuple(DataInput(f"{name}/{c}", md5, source, c) for c in ("train", "test"))
        out[name] = pair + ((sources[ds],) if sources and ds in sources else ())
    return out


GENERATOR = "bnmodels.experiment.data.generate"


def source_input(spec: DataSpec, recorded: Mapping[str, Any] | None = None) -> DataInput:
    """Where a data set comes from, as a run input named for the data set (context
    `source`): a file data set's file as params.yaml names it, with the md5 and columns the
    read stage recorded (`recorded`, its columns.json); a generated one's generator and
    its params, digested."""
    if isinstance(spec, FileSpec):
        recorded = recorded or {}
        keys = ("rows", "target", "features", "classes")
        profile = json.dumps({k: recorded[k] for k in keys if k in recorded})
        source = json.dumps({"uri": spec.file})
        return DataInput(spec.name, recorded.get("md5", ""), source, "source", profile=profile)
    recipe = json.dumps({"generator": GENERATOR, "params": spec.as_dict()}, sort_keys=True)
    digest = hashlib.md5(recipe.encode()).hexdigest()
    return DataInput(spec.name, digest, recipe, "source", source_type="code")


@dataclass(frozen=True)
class ChildRun:
    """One child run, ready to write: everything but its id."""

    config: RunConfig
    in_features: int
    state_dict: Mapping[str, Any]
    status: str  # FINISHED, or FAILED for a diverged run
    start_ms: int
    end_ms: int
    tags: dict[str, str]
    params: dict[str, str]
    metrics: list[tuple[str, float, int]]  # (key, value, step)
    inputs: tuple[DataInput, ...] = ()

    @property
    def run_key(self) -> str:
        return self.config.run_key


def run_metrics(history: Mapping[str, Any]) -> list[tuple[str, float, int]]:
    """(key, value, step = epoch) of `STEP_METRICS` at every finite epoch, and of every
    other column at its last finite epoch. NaN epochs (after divergence) are absent."""
    out = []
    for key, values in history.items():
        finite = [(float(v), i + 1) for i, v in enumerate(values) if math.isfinite(v)]
        for value, step in finite if key in STEP_METRICS else finite[-1:]:
            out.append((key, value, step))
    return out


def precise_metrics(result: RunResult) -> list[tuple[str, float, int]]:
    """The test metrics with precise BN statistics (runs with BN), at the last epoch."""
    step = len(next(iter(result.history.values()), ()))
    values = getattr(result, "precise_bn", {}) or {}
    return [
        (f"final_test_{k}_precise_bn", float(v), step)
        for k, v in values.items()
        if math.isfinite(v)
    ]


def child_run(
    result: RunResult,
    in_features: int,
    tags: Mapping[str, str],
    parent_id: str,
    sweep: str,
    start_ms: int,
    end_ms: int,
    inputs: Sequence[DataInput] = (),
) -> ChildRun:
    key = result.config.run_key
    return ChildRun(
        config=result.config,
        in_features=in_features,
        state_dict=result.state_dict,
        status="FAILED" if result.diverged else "FINISHED",
        start_ms=start_ms,
        end_ms=max(end_ms, start_ms),
        tags={
            **tags,
            PARENT_TAG: parent_id,
            RUN_NAME_TAG: key,
            "sweep": sweep,
            "run_key": key,
            "diverged": str(bool(result.diverged)).lower(),
        },
        params={k: str(v) for k, v in result.config.as_dict().items()},
        metrics=run_metrics(result.history) + precise_metrics(result),
        inputs=tuple(inputs),
    )


def dataset_inputs(inputs: Sequence[DataInput]) -> list:
    """MLflow's `DatasetInput` records of `inputs` (for `MlflowClient.log_inputs`)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    return [
        DatasetInput(
            Dataset(i.name, i.digest, i.source_type, i.source, profile=i.profile),
            [InputTag(CONTEXT_TAG, i.context)],
        )
        for i in inputs
    ]


def _write_weights(run: ChildRun, folder: Path) -> Path:
    from bnmodels.tracking.weights import save_weights

    path = folder / MODEL_FILE
    save_weights(path, run.config, run.in_features, run.state_dict)
    return path


class ClientWriter:
    """Through `MlflowClient`, four calls a run (create, log_batch, the weights file,
    set_terminated), each retried on transient errors for up to `retry_s` seconds."""

    def __init__(self, client: MlflowClient, uri: str, experiment_id: str, retry_s: float):
        self.client, self.uri, self.experiment_id = client, uri, experiment_id
        self.retry_s = retry_s

    def write(self, runs: Sequence[ChildRun]) -> dict[str, str]:
        # Against a server MLflow prints two "View run" links per ended run.
        with env(MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true"):
            return {run.run_key: self._write(run) for run in runs}

    def _write(self, run: ChildRun) -> str:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        def attempt(call, *args, **kwargs):
            return retrying(
                partial(call, *args, **kwargs),
                uri=self.uri,
                retry_s=self.retry_s,
                what=f"logging run {run.run_key}",
            )

        tags = {k: v for k, v in run.tags.items() if k != RUN_NAME_TAG}
        info = attempt(
            self.client.create_run,
            self.experiment_id,
            start_time=run.start_ms,
            tags=tags,
            run_name=run.run_key,
        ).info
        metrics = [Metric(k, v, run.end_ms, s) for k, v, s in run.metrics]
        try:
            attempt(
                self.client.log_batch,
                info.run_id,
                metrics=metrics[:900],  # 1000 a call
                params=[Param(k, v) for k, v in run.params.items()],
                tags=[RunTag("model_uri", f"runs:/{info.run_id}/{MODEL_FILE}")],
            )
            for i in range(900, len(metrics), 900):
                attempt(self.client.log_batch, info.run_id, metrics=metrics[i : i + 900])
            if run.inputs:
                attempt(self.client.log_inputs, info.run_id, dataset_inputs(run.inputs))
            repo = get_artifact_repository(info.artifact_uri, tracking_uri=self.uri)
            with tempfile.TemporaryDirectory(prefix="bnmodels-run-") as tmp:
                attempt(repo.log_artifact, str(_write_weights(run, Path(tmp))))
        except BaseException as e:  # marked, if the store still answers; else resumed later
            status = "KILLED" if isinstance(e, KeyboardInterrupt | SystemExit) else "FAILED"
            with contextlib.suppress(Exception), env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"):
                self.client.set_terminated(info.run_id, status)
            raise
        attempt(self.client.set_terminated, info.run_id, run.status, end_time=run.end_ms)
        return info.run_id


def _sql_store(client: MlflowClient):
    """The SqlAlchemyStore behind a client (SQLite, PostgreSQL, ...), else None."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = client._tracking_client.store
    return store if isinstance(store, SqlAlchemyStore) else None


def writer_for(client: MlflowClient, uri: str, experiment_id: str, retry_s: float):
    """The bulk writer for a SQL store whose schema it was validated on; MLflow's client
    for a tracking server, or (with a one-line warning) a SQL store of another revision."""
    from bnmodels.tracking import sql_bulk

    store = _sql_store(client)
    if store is not None and sql_bulk.usable(store.engine, uri):
        return sql_bulk.SqlBulkWriter(client, uri, experiment_id, retry_s)
    return ClientWriter(client, uri, experiment_id, retry_s)
