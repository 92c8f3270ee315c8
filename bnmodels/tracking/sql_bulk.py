"""Child runs written in bulk into MLflow's own SQL tables: one transaction a chunk.

A hand-written path, kept because MLflow has no API that writes more than one run a call:
its SQL store builds an ORM object per metric row and commits three times per run
(create_run, log_batch, set_terminated). cProfile of that loop (480 values a run, SQLite):
70% of the time in log_batch's metrics, 43% building and flushing the ORM objects and 31%
in the latest-metrics bookkeeping. Here each run is inserted already ended, with its tags,
params, metrics and latest metrics, by SQLAlchemy Core `executemany`, and its data sets as
MLflow's `log_inputs` writes them; one commit per chunk. `benchmarks/tracking.py`
measured 61.4 runs/s against 5.2 for the client loop (11.7x). The runs read back through
`MlflowClient` exactly as the client writes them (tests/test_tracking.py, on SQLite and
on PostgreSQL).

MLflow internals it uses (pinned with mlflow in requirements.lock):
1. `mlflow.store.tracking.dbmodels.models`: the table definitions SqlRun, SqlTag, SqlParam,
   SqlMetric, SqlLatestMetric, SqlInput, SqlInputTag, SqlDataset;
2. `SqlAlchemyStore.engine` (through `MlflowClient._tracking_client.store`);
3. `mlflow.store.db.utils._get_schema_version`, the store's alembic revision;
4. the column conventions of those tables (status strings, `lifecycle_stage`, the
   `source_id` of an input row being the dataset's uuid).

So it is used only on a store whose schema revision is VALIDATED_REVISION, the one these
rows were checked against (tests/test_sql_bulk.py: equal to the installed MLflow's head);
any other revision gets MLflow's own client, with a one-line warning.

Checks of MLflow's it skips, and why each is safe for these runs:
1. key and value validation of params, tags and metrics (`_validate_*`): the keys are
   fixed names of this project, the values numbers and short strings;
2. the 500-character limit on param values: configuration values are short;
3. the check that the experiment is active: the parent run was just opened in it;
4. the `is_nan` flag and the NaN/inf encoding of metric values: a diverged run's
   non-finite values are dropped before they get here (`run_metrics`);
5. duplicate-key checks within a batch: each run's keys are distinct by construction;
6. the run name tag (`mlflow.runName`) and user tags MLflow's fluent API adds: the run
   name is stored in the runs table, which is what the UI and the client read.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from bnmodels.tracking.store import retrying
from bnmodels.tracking.writers import (
    CONTEXT_TAG,
    MODEL_FILE,
    ChildRun,
    DataInput,
    _sql_store,
    _write_weights,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

# The alembic revision of MLflow's tracking schema these inserts were validated on
# (mlflow 3.17.2's head).
VALIDATED_REVISION = "dc11669786a5"


def revision(engine) -> str | None:
    from mlflow.store.db.utils import _get_schema_version

    return _get_schema_version(engine)


def usable(engine, uri: str) -> bool:
    """Whether the bulk path may write into this store: its schema is the validated one."""
    found = revision(engine)
    if found == VALIDATED_REVISION:
        return True
    print(
        f"bnmodels: {uri} has MLflow schema revision {found}, not {VALIDATED_REVISION}: "
        "logging through MLflow's client (slower)",
        file=sys.stderr,
    )
    return False


class Rows:
    """The rows of a chunk of runs, table by table, and their inserts."""

    def __init__(self):
        self.run, self.tag, self.param, self.metric, self.latest = [], [], [], [], []
        self.input, self.input_tag = [], []
        self.inputs: dict[tuple[str, str], DataInput] = {}  # (name, digest) -> data set
        self.run_ids: dict[str, str] = {}

    def add(self, run: ChildRun, run_id: str, artifact_uri: str, experiment_id: int) -> None:
        self.run.append(
            dict(
                run_uuid=run_id,
                name=run.run_key,
                source_type="UNKNOWN",
                source_name="",
                entry_point_name="",
                user_id="unknown",
                status=run.status,  # as MlflowClient
                start_time=run.start_ms,
                end_time=run.end_ms,
                deleted_time=None,
                source_version="",
                lifecycle_stage="active",
                artifact_uri=artifact_uri,
                experiment_id=experiment_id,
            )
        )
        tags = {**run.tags, "model_uri": f"runs:/{run_id}/{MODEL_FILE}"}
        self.tag += [dict(key=k, value=v, run_uuid=run_id) for k, v in tags.items()]
        self.param += [dict(key=k, value=v, run_uuid=run_id) for k, v in run.params.items()]
        self._metrics(run, run_id)
        self._inputs(run, run_id)
        self.run_ids[run.run_key] = run_id

    def _metrics(self, run: ChildRun, run_id: str) -> None:
        latest = {}
        for k, v, s in run.metrics:
            row = dict(key=k, value=v, timestamp=run.end_ms, step=s, is_nan=False, run_uuid=run_id)
            self.metric.append(row)
            if k not in latest or s >= latest[k]["step"]:
                latest[k] = row
        self.latest += latest.values()

    def _inputs(self, run: ChildRun, run_id: str) -> None:
        for i in {(i.name, i.digest): i for i in run.inputs}.values():  # as MLflow
            self.inputs[(i.name, i.digest)] = i
            input_uuid = uuid.uuid4().hex
            self.input.append(
                dict(
                    input_uuid=input_uuid,
                    source_type="DATASET",
                    source_id=(i.name, i.digest),  # the dataset's uuid, at insert
                    destination_type="RUN",
                    destination_id=run_id,
                    step=0,
                )
            )
            self.input_tag.append(dict(input_uuid=input_uuid, name=CONTEXT_TAG, value=i.context))

    def insert(self, con, dataset_uuids: Mapping[tuple[str, str], str]) -> None:
        from mlflow.store.tracking.dbmodels.models import (
            SqlInput,
            SqlInputTag,
            SqlLatestMetric,
            SqlMetric,
            SqlParam,
            SqlRun,
            SqlTag,
        )
        from sqlalchemy import insert

        for row in self.input:
            row["source_id"] = dataset_uuids[row["source_id"]]
        for model, rows in (
            (SqlRun, self.run),
            (SqlTag, self.tag),
            (SqlParam, self.param),
            (SqlMetric, self.metric),
            (SqlLatestMetric, self.latest),
            (SqlInput, self.input),
            (SqlInputTag, self.input_tag),
        ):
            if rows:
                con.execute(insert(model.__table__), rows)


class SqlBulkWriter:
    """A chunk of runs in one transaction, into the SQL store's own tables (module doc)."""

    def __init__(self, client: MlflowClient, uri: str, experiment_id: str, retry_s: float):
        self.store = _sql_store(client)
        if self.store is None:
            raise TypeError(f"{uri} is not a SQL store")
        self.uri, self.experiment_id, self.retry_s = uri, experiment_id, retry_s
        self.location = client.get_experiment(experiment_id).artifact_location

    def write(self, runs: Sequence[ChildRun]) -> dict[str, str]:
        """One transaction, retried whole (a busy SQLite, a restarting database)."""
        return retrying(
            partial(self._write, runs),
            uri=self.uri,
            retry_s=self.retry_s,
            what=f"logging {len(runs)} runs",
        )

    def _write(self, runs: Sequence[ChildRun]) -> dict[str, str]:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
        from mlflow.utils.uri import append_to_uri_path

        rows = Rows()
        with tempfile.TemporaryDirectory(prefix="bnmodels-runs-") as tmp:
            for n, run in enumerate(runs):
                run_id = uuid.uuid4().hex
                artifact_uri = append_to_uri_path(self.location, run_id, "artifacts")
                folder = Path(tmp) / str(n)
                folder.mkdir()
                # weights first: a failed insert leaves an unreferenced file, never a run
                # whose model is missing
                repo = get_artifact_repository(artifact_uri, tracking_uri=self.uri)
                repo.log_artifact(str(_write_weights(run, folder)))
                rows.add(run, run_id, artifact_uri, int(self.experiment_id))
        with self.store.engine.begin() as con:
            rows.insert(con, self._dataset_uuids(con, rows.inputs))
        return rows.run_ids

    def _dataset_uuids(self, con, inputs: Mapping[tuple[str, str], DataInput]) -> dict:
        """{(name, digest): dataset uuid} of the experiment, adding the data sets it lacks.

        The parent run logs the sweep's data sets first (`open_sweep_run`), so concurrent
        writers of one sweep find them here rather than racing to add them.
        """
        from mlflow.store.tracking.dbmodels.models import SqlDataset
        from sqlalchemy import insert, select

        if not inputs:
            return {}
        t = SqlDataset.__table__
        found = con.execute(
            select(t.c.name, t.c.digest, t.c.dataset_uuid).where(
                t.c.experiment_id == int(self.experiment_id),
                t.c.name.in_({n for n, _ in inputs}),
                t.c.digest.in_({d for _, d in inputs}),
            )
        )
        uuids = {(n, d): u for n, d, u in found}
        new = [
            dict(
                dataset_uuid=uuid.uuid4().hex,
                experiment_id=int(self.experiment_id),
                name=i.name,
                digest=i.digest,
                dataset_source_type=i.source_type,
                dataset_source=i.source,
                dataset_schema=None,
                dataset_profile=i.profile,
            )
            for key, i in inputs.items()
            if key not in uuids
        ]
        if new:
            con.execute(insert(t), new)
            uuids.update({(r["name"], r["digest"]): r["dataset_uuid"] for r in new})
        return uuids
