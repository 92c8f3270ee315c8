"""The SQL bulk path is used only on the schema it was validated on."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from bnmodels.tracking import sql_bulk, writers


def test_the_validated_revision_is_the_installed_mlflows_head():
    from mlflow.store.db.utils import _get_latest_schema_revision

    assert sql_bulk.VALIDATED_REVISION == _get_latest_schema_revision()


@pytest.fixture
def store(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("e")
    return uri, client, experiment_id, tmp_path / "mlflow.db"


def test_a_store_of_the_validated_schema_gets_the_bulk_writer(store):
    uri, client, experiment_id, _ = store
    assert isinstance(writers.writer_for(client, uri, experiment_id, 5), sql_bulk.SqlBulkWriter)


def test_another_revision_gets_mlflows_client_with_one_line_of_warning(store, monkeypatch, capsys):
    uri, client, experiment_id, _ = store
    monkeypatch.setattr(sql_bulk, "VALIDATED_REVISION", "0123456789ab")  # a newer MLflow's
    writer = writers.writer_for(client, uri, experiment_id, 5)
    assert isinstance(writer, writers.ClientWriter)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0123456789ab" in err[0] and "client" in err[0]


CHECK = """
import sys, time
from bnmodels.errors import TrackingError
from bnmodels.tracking.store import check_reachable
start = time.monotonic()
try:
    check_reachable(sys.argv[1], tries=3, backoff_s=60.0)
except TrackingError as e:
    print(f"{time.monotonic() - start:.2f}", e)
"""


def test_a_foreign_schema_fails_at_once_saying_what_to_do(store):
    uri, _, _, path = store
    with sqlite3.connect(path) as con:  # a store written by another MLflow version
        con.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    # a fresh process, as a stage is (MLflow checks a store's schema once a process)
    out = subprocess.run(
        [sys.executable, "-c", CHECK, uri], capture_output=True, text=True, check=True
    ).stdout
    seconds, message = out.split(" ", 1)
    # no retry: it cannot fix a schema. A retry would wait 60 s first; the check itself
    # takes 1-5 s (4.75 s once on a loaded machine, which failed a bound of 4.5 s)
    assert float(seconds) < 30
    assert "mlflow db upgrade" in message and "not reachable" not in message
