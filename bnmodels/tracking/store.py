"""The MLflow tracking store: where it is, whether it can be used, and its experiments.

A store is a URI: a SQLite file (`sqlite:///...`, the default, one writer at a time), a
database (`postgresql://...`, concurrent writers) or a tracking server (`http(s)://...`,
concurrent writers; `make server` starts one on PostgreSQL). mlflow (about 1 s to import)
is imported inside the functions that use it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit, urlunsplit

from bnmodels.errors import TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT_PREFIX = "bnmodels/"
ARTIFACT_DIR = "mlartifacts"  # next to a SQLite store, like `mlflow server`'s default
# The UI picks the experiment page's view from this tag ("Machine learning" in its menu).
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
LOCK_TIMEOUT_S = 300.0
T = TypeVar("T")


def default_tracking_uri(root: str | Path) -> str:
    """`MLFLOW_TRACKING_URI` if set, else the SQLite store `mlflow.db` at the repository root:
    `$DVC_ROOT` (the real root, also from a queued experiment's temporary copy) or `root`."""
    if uri := os.environ.get("MLFLOW_TRACKING_URI"):
        return uri
    root = Path(os.environ.get("DVC_ROOT") or root).resolve()
    return f"sqlite:///{(root / 'mlflow.db').as_posix()}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (absolute), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path).resolve() if path and path != ":memory:" else None


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def accepts_concurrent_writers(uri: str) -> bool:
    """A tracking server or a client-server database: yes; SQLite (one writer): no."""
    return is_server(uri) or uri.split(":", 1)[0].split("+")[0] in ("postgresql", "mysql", "mssql")


def redact(uri: str) -> str:
    """The URI without a password, for messages."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@contextlib.contextmanager
def env(**values: str) -> Iterator[None]:
    """Set environment variables for the block, restoring them after (MLflow reads its
    HTTP settings from the environment at each call). Not thread-safe."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def ensure_store(uri: str, timeout: float = LOCK_TIMEOUT_S) -> None:
    """Create a SQLite store's schema once, safely when several processes start at once.

    MLflow creates a missing schema on first use with alembic migrations, and two processes
    doing so at once race (duplicate tables, a half-migrated file). Here the first process
    creates it under the file lock `<db>-lock`; the others wait, then find it complete.
    The store is switched to WAL journaling: readers (`mlflow ui`) no longer block writers,
    and commits are cheaper. Other URIs are left alone.
    """
    db = sqlite_path(uri)
    if db is None:
        return
    import sqlite3

    from filelock import FileLock, Timeout  # a dependency of torch and dvc
    from mlflow import MlflowClient

    db.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(f"{db}-lock", timeout=timeout):
            MlflowClient(uri).search_experiments(max_results=1)  # creates or verifies
            with contextlib.closing(sqlite3.connect(db, timeout=timeout)) as con:
                if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    with contextlib.suppress(sqlite3.OperationalError):  # an optimization
                        con.execute("PRAGMA journal_mode=WAL")
    except Timeout:
        raise TrackingError(
            f"MLflow store {uri}: another process held its lock {db}-lock for {timeout:.0f} s"
        ) from None


def _reason(e: BaseException) -> str:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
    return reason if len(reason) <= 300 else reason[:297] + "..."


def check_reachable(
    uri: str, *, tries: int = 3, backoff_s: float = 0.5, timeout_s: int = 2
) -> None:
    """Fail fast, before training, when the tracking backend cannot be used.

    A SQLite store is created if missing (`ensure_store`). For a server, each try is one
    request with no HTTP retries and a `timeout_s` second timeout; tries are `backoff_s`,
    2 * `backoff_s`, ... apart, so a server that is down fails within seconds instead of
    MLflow's default of minutes of retries. Raises TrackingError naming the URI.
    """
    from mlflow import MlflowClient

    last: Exception | None = None
    for attempt in range(tries):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            with env(
                MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(timeout_s)
            ):
                ensure_store(uri)
                MlflowClient(uri).search_experiments(max_results=1)
            return
        except TrackingError:
            raise
        except Exception as e:  # connection refused, timeout, unreadable file...
            if "database schema" in str(e):  # MLflow's _verify_schema: retrying cannot help
                raise TrackingError(
                    f"MLflow tracking store {redact(uri)} has another schema than this MLflow "
                    f"expects ({_reason(e)}): back it up and run `mlflow db upgrade "
                    f"{redact(uri)}`, or point MLFLOW_TRACKING_URI at a new store"
                ) from e
            last = e
    raise TrackingError(
        f"MLflow tracking backend {redact(uri)} is not reachable ({tries} tries): {_reason(last)}"
    )


def preflight(uri: str, sweep: str, timeout_s: float = 10.0) -> None:
    """Before any training: a tracking server that would refuse this sweep's runs fails now,
    with one line naming the server and what to do, and nothing changed on it.

    Checks, with the credentials and certificate MLflow's client would use
    (`MLFLOW_TRACKING_USERNAME`/`_PASSWORD`, else `~/.mlflow/credentials`;
    `MLFLOW_TRACKING_SERVER_CERT_PATH`, `MLFLOW_TRACKING_INSECURE_TLS`): the certificate is
    trusted, an `http://` URI does not point at a TLS server, the credentials are accepted
    (HTTP 401), and the account may write the sweep's experiment if it exists (any account
    may create one). The write check is a `set-experiment-tag` with an empty key: the
    server checks the permission first (403), then refuses the request (400). Plain
    `requests`, no MLflow: the stage forks its workers before importing MLflow. A server
    that does not answer is left to `check_reachable` (it retries). Other URIs: no-op.
    """
    if not is_server(uri):
        return
    import requests

    where = redact(uri)
    user, password = _credentials()
    auth = (user, password) if user and password else None
    insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true"
    verify = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or not insecure
    api = uri.rstrip("/") + "/api/2.0/mlflow/experiments/"
    get = {"params": {"experiment_name": experiment_name(sweep)}}
    try:
        r = requests.get(api + "get-by-name", auth=auth, verify=verify, timeout=timeout_s, **get)
        if r.status_code == 200:
            exp_id = r.json()["experiment"]["experiment_id"]
            probe = {"experiment_id": exp_id, "key": "", "value": ""}  # refused: changes nothing
            w = requests.post(
                api + "set-experiment-tag", json=probe, auth=auth, verify=verify, timeout=timeout_s
            )
            if w.status_code == 403:
                raise TrackingError(
                    f"MLflow tracking server {where}: user {user!r} may read but not write "
                    f"experiment {experiment_name(sweep)} (HTTP 403): ask its admin for EDIT on "
                    "it, or log as an editor (MLFLOW_TRACKING_USERNAME/PASSWORD)"
                )
    except requests.exceptions.SSLError as e:
        raise TrackingError(
            f"MLflow tracking server {where}: its TLS certificate is not trusted "
            f"({_ssl_reason(e)}): set MLFLOW_TRACKING_SERVER_CERT_PATH to the server's "
            "certificate (`make server` prints where it is)"
        ) from None
    except requests.exceptions.ConnectionError:
        if uri.startswith("http://") and _speaks_tls(uri, timeout_s):
            raise TrackingError(
                f"MLflow tracking server {where} answers HTTPS only: set MLFLOW_TRACKING_URI "
                f"to {where.replace('http://', 'https://', 1)}"
            ) from None
        return  # not answering: check_reachable retries, then names it
    if r.status_code == 401:
        given = f"the credentials of user {user!r}" if auth else "a request without credentials"
        raise TrackingError(
            f"MLflow tracking server {where} refused {given} (HTTP 401): set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to your account on it "
            "(its admin makes one: make server-user)"
        )
    if r.status_code == 403:
        raise TrackingError(
            f"MLflow tracking server {where}: user {user!r} may not read experiment "
            f"{experiment_name(sweep)} (HTTP 403): ask its admin for EDIT on it"
        )


def _credentials() -> tuple[str | None, str | None]:
    """What MLflow's client sends: the environment's, else `~/.mlflow/credentials`'."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user is None and password is None:
        import configparser

        config = configparser.ConfigParser()
        config.read(Path("~/.mlflow/credentials").expanduser())
        if config.has_section("mlflow"):
            user = config["mlflow"].get("mlflow_tracking_username")
            password = config["mlflow"].get("mlflow_tracking_password")
    return user, password


def _ssl_reason(e: BaseException) -> str:
    text = str(e)
    for reason in ("self-signed certificate", "certificate verify failed", "hostname mismatch"):
        if reason in text:
            return reason
    return "certificate verify failed"


def _speaks_tls(uri: str, timeout_s: float) -> bool:
    """Whether host:port of an http:// URI completes a TLS handshake (certificate unchecked:
    only to say which scheme to use)."""
    import socket
    import ssl

    parts = urlsplit(uri)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with (
            socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout_s) as s,
            context.wrap_socket(s),
        ):
            return True
    except OSError:
        return False


def is_transient(e: BaseException) -> bool:
    """An error that a later try may not meet: the server or database unreachable or
    overloaded (connection refused, timeout, HTTP 5xx, SQLite busy), not a bad request."""
    import requests
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    if isinstance(e, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return True
    if isinstance(e, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return True
    if isinstance(e, MlflowException):
        msg = str(e)
        return (
            "failed with exception" in msg
            or "Max retries exceeded" in msg
            or e.get_http_status_code() >= 500
            and "API request" in msg
        )
    return isinstance(e, ConnectionError | TimeoutError)


def retrying(call: Callable[[], T], *, uri: str, retry_s: float, what: str) -> T:
    """`call()`, tried again on transient errors (`is_transient`) for up to `retry_s`
    seconds (waits of 0.5, 1, 2, ... 5 s); then a TrackingError that names the URI.

    MLflow's own HTTP retries (7 by default, about 2 minutes a request) are turned off for
    the call, so that this bound is the one that holds.
    """
    deadline = time.monotonic() + retry_s
    wait = 0.5
    while True:
        try:
            with env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="30"):
                return call()
        except Exception as e:
            if not is_transient(e):
                raise
            if time.monotonic() + wait > deadline:
                raise TrackingError(
                    f"MLflow tracking backend {redact(uri)} failed for {retry_s:.0f} s while "
                    f"{what}: {_reason(e)}. Runs logged so far are kept; once it is back, "
                    "`dvc repro` logs the rest of the sweep"
                ) from None
            time.sleep(wait)
            wait = min(2 * wait, 5.0)


def experiment_url(uri: str, experiment_id: str, ui: str = "http://127.0.0.1:5000") -> str:
    """Link to the experiment's runs table in the MLflow 3 UI (machine-learning view).

    The UI is the tracking server itself when `uri` is http(s), else `ui` (where
    `mlflow ui` serves the store). MLflow 3's UI uses hash routes, and opens an experiment
    in its GenAI view unless told `workflowType=machine_learning`.
    """
    base = uri if is_server(uri) else ui
    parts = urlsplit(base)
    base = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1])).rstrip("/")
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def experiment_name(sweep: str) -> str:
    return EXPERIMENT_PREFIX + sweep


def experiment_id(client: MlflowClient, uri: str, sweep: str) -> str:
    """The sweep's experiment, created on first use (or restored if it was deleted).

    On a SQLite store its artifacts live in `mlartifacts/<sweep>/` next to the database
    file, never under the current directory; a server chooses its own location.
    """
    from mlflow.exceptions import MlflowException

    name = experiment_name(sweep)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        db = sqlite_path(uri)
        location = (db.parent / ARTIFACT_DIR / sweep).as_uri() if db else None
        try:
            return client.create_experiment(
                name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            )
        except MlflowException:  # created meanwhile by a concurrent process
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id
