"""MLflow tracking of sweeps (SPEC 5): one experiment per sweep, one parent run per sweep
execution, one child run per training run.

Layout in the store:

- experiment `bnmodels/<sweep>`, tagged as a machine-learning experiment so the UI opens
  its runs table (not the GenAI traces view); on a SQLite store its artifacts live in
  `mlartifacts/<sweep>/` next to the database file, never under the current directory;
- parent run `<sweep>`: the caller's tags (git commit, DVC stage, params hash), the values
  of each configuration key that varies across the sweep as params, the figures;
- child run `<run_key>` per result: the 12 configuration keys as params, every history
  column as a step metric (step = epoch 1..N; NaN epochs are absent), `diagnostics.json`,
  and the trained model as an MLflow PyTorch model at `model/` (tag `model_uri`). A
  diverged run is tagged `diverged=true` and its status is FAILED; the others FINISHED.

Speed: a pipeline logs ~800 runs. `mlflow.pytorch.log_model` costs 50-550 ms a run (it
saves, infers a signature, creates a LoggedModel, validates a serving example), so the
model is written by `mlflow.pytorch.save_model` once per signature into a template and,
per run, only the pickled module and a fresh `MLmodel` are new; each child run is then
four client calls (create_run, log_batch per 1000 values, log_artifacts, set_terminated),
~40 ms in all on 2 CPU cores with a SQLite store, of which ~25 ms is MLflow inserting the
~400 step metrics of a run (its SQLAlchemy ORM, ~0.06 ms a value).
The models are pickled (`serialization_format="pickle"`): it keeps the `MLP` class and
costs ~1.5 ms, where MLflow 3's default `pt2` needs a `torch.export` per architecture,
~13 ms to save per run, and loads as a graph module that cannot be put in eval mode.
MLflow 3 refuses to unpickle unless `MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true`;
`load_run_model` allows it for the call, and loading needs `bnmodels` importable.

mlflow (about 1 s to import) and torch are imported inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from bnmodels.config import CONFIG_KEYS, RunConfig
from bnmodels.errors import TrackingError

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

    from bnmodels.run import RunResult

EXPERIMENT_PREFIX = "bnmodels/"
ARTIFACT_DIR = "mlartifacts"  # next to a SQLite store, like `mlflow server`'s default
MODEL_PATH = "model"  # run-relative artifact path of the model
DIAGNOSTICS_FILE = "diagnostics.json"
# The UI picks the experiment page's view from this tag ("Machine learning" in its menu).
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
LOCK_TIMEOUT_S = 300.0


# ---------------------------------------------------------------------------
# The store


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


def _redact(uri: str) -> str:
    """The URI without a password, for messages."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


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


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Set environment variables for the block, restoring them after (MLflow reads its
    HTTP and pickle settings from the environment at each call). Not thread-safe."""
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
            with _env(
                MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(timeout_s)
            ):
                ensure_store(uri)
                MlflowClient(uri).search_experiments(max_results=1)
            return
        except TrackingError:
            raise
        except Exception as e:  # connection refused, timeout, unreadable file, bad schema...
            last = e
    reason = str(last).strip().splitlines()[0] if str(last).strip() else repr(last)
    reason = reason if len(reason) <= 300 else reason[:297] + "..."
    raise TrackingError(
        f"MLflow tracking backend {_redact(uri)} is not reachable ({tries} tries): {reason}"
    )


def experiment_url(uri: str, experiment_id: str, ui: str = "http://127.0.0.1:5000") -> str:
    """Link to the experiment's runs table in the MLflow 3 UI (machine-learning view).

    The UI is the tracking server itself when `uri` is http(s), else `ui` (where
    `mlflow ui` serves the store). MLflow 3's UI uses hash routes, and opens an experiment
    in its GenAI view unless told `workflowType=machine_learning`.
    """
    base = uri if uri.startswith(("http://", "https://")) else ui
    parts = urlsplit(base)
    base = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1])).rstrip("/")
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def experiment_name(sweep: str) -> str:
    return EXPERIMENT_PREFIX + sweep


def _experiment_id(client: MlflowClient, uri: str, sweep: str) -> str:
    """The sweep's experiment, created on first use (or restored if it was deleted)."""
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


# ---------------------------------------------------------------------------
# Runs


def varying_params(configs: Sequence[RunConfig]) -> dict[str, str]:
    """The parent run's params: each configuration key whose value differs across the
    sweep, with its values in order of first appearance (`depth: "1,3"`), and `varying`."""
    values = {k: list(dict.fromkeys(getattr(c, k) for c in configs)) for k in CONFIG_KEYS}
    varying = {k: v for k, v in values.items() if len(v) > 1}
    return {
        "varying": ",".join(varying) or "-",
        **{k: ",".join(map(str, v)) for k, v in varying.items()},
    }


def _status(exc: BaseException) -> str:
    """KILLED for an interruption (Ctrl-C, SIGTERM as SystemExit), FAILED for an error."""
    return "KILLED" if isinstance(exc, KeyboardInterrupt | SystemExit) else "FAILED"


def _end(client: MlflowClient, run_id: str, status: str) -> None:
    # Against a server, MLflow prints two "View run" links per ended run: 1600 lines a
    # pipeline. The caller prints `experiment_url` once instead.
    with _env(MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true"):
        client.set_terminated(run_id, status)


def _end_quietly(client: MlflowClient, run_id: str, status: str) -> None:
    with contextlib.suppress(Exception):  # never hide the exception being handled
        _end(client, run_id, status)


def _strict_json(obj: Any) -> str:
    """JSON without NaN/Infinity tokens (a diverged run's statistics): they become null."""
    try:
        return json.dumps(obj, allow_nan=False)
    except ValueError:

        def clean(x):
            if isinstance(x, float):
                return x if math.isfinite(x) else None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, list | tuple):
                return [clean(v) for v in x]
            return x

        return json.dumps(clean(obj), allow_nan=False)


def _pip_requirements() -> list[str]:
    """What loading a model needs, pinned; torch without its local label (`+cpu`), which
    PyPI does not serve. `bnmodels` itself must be importable too (the class is pickled
    by reference)."""
    import cloudpickle
    import torch

    return [f"torch=={torch.__version__.split('+')[0]}", f"cloudpickle=={cloudpickle.__version__}"]


class _ModelWriter:
    """Writes MLflow PyTorch model directories at the cost of one `torch.save`.

    `mlflow.pytorch.save_model` runs once per signature (input width, dtype) into a
    template; per run the environment files are hard-linked from it and only
    `data/model.pth` and `MLmodel` (run id, uuid, time, size) are new.
    """

    def __init__(self, root: Path):
        self.root = root
        self.templates: dict[tuple[int, str], tuple[Path, Any, list[Path]]] = {}

    def _template(self, model, in_features: int, dtype: str):
        key = (in_features, dtype)
        if key not in self.templates:
            import logging

            import mlflow.pytorch
            import numpy as np
            from mlflow.models import Model, ModelSignature
            from mlflow.types import Schema, TensorSpec

            path = self.root / f"{in_features}-{dtype}"
            signature = ModelSignature(  # (batch, features) -> (batch, 1)
                inputs=Schema([TensorSpec(np.dtype(dtype), (-1, in_features))]),
                outputs=Schema([TensorSpec(np.dtype(dtype), (-1, 1))]),
            )

            def quiet(record):  # save_model warns that pickles can run code: ours only
                return "Pickle" not in record.getMessage()

            logger = logging.getLogger("mlflow.pytorch")
            logger.addFilter(quiet)
            try:
                mlflow.pytorch.save_model(
                    model, path, signature=signature, serialization_format="pickle",
                    # explicit: no inference (which loads the model back); no local label
                    pip_requirements=_pip_requirements(),
                )  # fmt: skip
            finally:
                logger.removeFilter(quiet)
            meta = Model.load(path / "MLmodel")
            (path / "data" / "model.pth").unlink()
            (path / "MLmodel").unlink()
            files = [p.relative_to(path) for p in path.rglob("*") if p.is_file()]
            self.templates[key] = (path, meta, files)
        return self.templates[key]

    def write(self, result: RunResult, in_features: int, run_id: str, dest: Path):
        """Write the run's model to `dest`; returns its MLflow `Model` metadata."""
        import mlflow.pytorch
        import torch

        from bnmodels.model import build_model

        # The weights may be views into a batched engine's stacked tensors, on any device
        # and in float64: load_state_dict copies them into a model of their dtype on CPU.
        dtype = next(v.dtype for v in result.state_dict.values() if v.is_floating_point())
        model = build_model(result.config, in_features).to(dtype)
        model.load_state_dict(result.state_dict)
        model.eval()
        template, meta, files = self._template(model, in_features, str(dtype).split(".")[-1])
        (dest / "data").mkdir(parents=True)
        for rel in files:
            try:
                os.link(template / rel, dest / rel)
            except OSError:
                shutil.copyfile(template / rel, dest / rel)
        torch.save(model, dest / "data" / "model.pth", pickle_module=mlflow.pytorch.pickle_module)
        m = copy.copy(meta)
        m.run_id, m.artifact_path, m.model_uuid = run_id, MODEL_PATH, uuid.uuid4().hex
        m.utc_time_created = str(datetime.now(UTC).replace(tzinfo=None))
        m.model_size_bytes = sum(p.stat().st_size for p in (dest / "data").iterdir())
        m.save(dest / "MLmodel")
        return m


def _history_metrics(history: Mapping[str, Any], timestamp: int) -> list:
    """Every history column as step metrics, step = epoch (1-based). Missing (NaN) epochs
    are absent, not logged as NaN; so are infinities, which MLflow would store as 1.8e308."""
    import numpy as np
    from mlflow.entities import Metric

    out = []
    for key, values in history.items():
        values = np.asarray(values, dtype=np.float64)
        for i in np.flatnonzero(np.isfinite(values)).tolist():
            out.append(Metric(key, float(values[i]), timestamp, i + 1))
    return out


def _batches(metrics: list, params: list, tags: list, limit: int = 1000) -> Iterator[dict]:
    """log_batch arguments: MLflow takes at most 1000 metrics + params + tags per call."""
    first = limit - len(params) - len(tags)
    yield {"metrics": metrics[:first], "params": params, "tags": tags}
    for i in range(first, len(metrics), limit):
        yield {"metrics": metrics[i : i + limit]}


@dataclass
class SweepRun:
    """An open parent run of one sweep execution (see `open_sweep_run`)."""

    client: MlflowClient
    sweep: str
    experiment_id: str
    run_id: str
    tags: dict[str, str]
    run_ids: dict[str, str] = field(default_factory=dict)  # run_key -> child run id

    def log_results(
        self,
        results: Sequence[RunResult],
        in_features: Mapping[str, int],
        progress: Callable[[int], object] | None = None,
    ) -> dict[str, str]:
        """Log one child run per result; returns {run_key: child run id}.

        `progress(1)` is called after each run (`tqdm(...).update` fits). If logging is
        interrupted, the child being logged is marked KILLED (FAILED on an error) and the
        exception propagates to `open_sweep_run`, which marks the parent.
        """
        from mlflow.entities import Param, RunTag
        from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_MODELS, MLFLOW_PARENT_RUN_ID

        keys = [r.config.run_key for r in results]
        if len(set(keys)) != len(keys):
            raise ValueError(f"sweep {self.sweep!r}: results repeat a run_key")
        missing = sorted({r.config.dataset for r in results} - set(in_features))
        if missing:
            raise ValueError(f"in_features has no entry for data set(s) {', '.join(missing)}")
        with tempfile.TemporaryDirectory(prefix="bnmodels-mlflow-") as tmp:
            writer = _ModelWriter(Path(tmp) / "templates")
            for n, result in enumerate(results):
                key = result.config.run_key
                run_id = None
                try:
                    run_id = self.client.create_run(
                        self.experiment_id,
                        run_name=key,
                        tags={
                            **self.tags,
                            MLFLOW_PARENT_RUN_ID: self.run_id,
                            "sweep": self.sweep,
                            "run_key": key,
                            "diverged": str(result.diverged).lower(),
                        },
                    ).info.run_id
                    stage = Path(tmp) / f"run-{n}"
                    meta = writer.write(
                        result, in_features[result.config.dataset], run_id, stage / MODEL_PATH
                    )
                    (stage / DIAGNOSTICS_FILE).write_text(_strict_json(result.final))
                    params = [Param(k, str(v)) for k, v in result.config.as_dict().items()]
                    metrics = _history_metrics(result.history, int(time.time() * 1000))
                    tags = [
                        RunTag("model_uri", f"runs:/{run_id}/{MODEL_PATH}"),
                        # what log_model records; the UI's runs table lists it under Models
                        RunTag(MLFLOW_LOGGED_MODELS, json.dumps([meta.get_tags_dict()])),
                    ]
                    for batch in _batches(metrics, params, tags):
                        self.client.log_batch(run_id, **batch)
                    self.client.log_artifacts(run_id, str(stage))
                    shutil.rmtree(stage)
                    _end(self.client, run_id, "FAILED" if result.diverged else "FINISHED")
                except BaseException as e:
                    if run_id is not None:
                        _end_quietly(self.client, run_id, _status(e))
                    raise
                self.run_ids[key] = run_id
                if progress is not None:
                    progress(1)
        return {k: self.run_ids[k] for k in keys}

    def log_figures(self, figures: Mapping[str, Figure]) -> None:
        """Log each figure as `figures/<name>.png` on the parent run."""
        for name, fig in figures.items():
            self.client.log_figure(self.run_id, fig, f"figures/{name}.png")


@contextlib.contextmanager
def open_sweep_run(
    sweep: str,
    *,
    uri: str,
    tags: Mapping[str, str],
    params: Mapping[str, str] | None = None,
) -> Iterator[SweepRun]:
    """Open the parent run of one execution of `sweep`; close it when the block ends.

    Open it before training so that an interruption anywhere inside is recorded: the
    parent ends FINISHED, KILLED on KeyboardInterrupt or SystemExit (see
    `sigterm_as_exit`), FAILED on any other exception, which propagates.
    """
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment_id = _experiment_id(client, uri, sweep)
    tags = {str(k): str(v) for k, v in tags.items()}
    run_id = client.create_run(
        experiment_id, run_name=sweep, tags={**tags, "sweep": sweep}
    ).info.run_id
    run = SweepRun(client, sweep, experiment_id, run_id, tags)
    try:
        if params:
            from mlflow.entities import Param

            client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        yield run
    except BaseException as e:
        _end_quietly(client, run_id, _status(e))
        raise
    _end(client, run_id, "FINISHED")


def log_sweep(
    sweep: str,
    results: Sequence[RunResult],
    *,
    uri: str,
    in_features: Mapping[str, int],
    tags: Mapping[str, str],
    figures: Mapping[str, Figure] | None = None,
    progress: Callable[[int], object] | None = None,
) -> tuple[str, dict[str, str]]:
    """Log one sweep execution: a parent run and a child run per result.

    `in_features` maps each data set to its feature count (to rebuild the models); `tags`
    (git commit, DVC stage, params hash, ...) go on the parent and every child.
    Returns (parent run id, {run_key: child run id}); everything is written on return.
    """
    check_reachable(uri)
    params = varying_params([r.config for r in results])
    with open_sweep_run(sweep, uri=uri, tags=tags, params=params) as run:
        run_ids = run.log_results(results, in_features, progress=progress)
        if figures:
            run.log_figures(figures)
    return run.run_id, run_ids


def load_run_model(run_id: str, uri: str):
    """The trained model of a logged run, in eval mode (an `MLP`).

    Raises TrackingError when the run is unknown or its model artifacts are gone.
    """
    import mlflow.pytorch
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except Exception as e:
        raise TrackingError(f"MLflow run {run_id} not found in {_redact(uri)}: {e}") from None
    where = f"{run.info.artifact_uri}/{MODEL_PATH}"
    with tempfile.TemporaryDirectory(prefix="bnmodels-model-") as tmp:
        try:
            with _env(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
                local = client.download_artifacts(run_id, MODEL_PATH, tmp)
        except Exception:
            local = None
        if local is None or not (Path(local) / "MLmodel").is_file():
            raise TrackingError(
                f"the model of MLflow run {run_id} is missing: no MLflow model at {where} "
                "(its artifacts were deleted, or it was not logged)"
            )
        try:
            # Our own pickles, from our own store: MLflow 3 refuses pickles by default.
            with _env(MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true"):
                return mlflow.pytorch.load_model(local)
        except Exception as e:
            raise TrackingError(f"the model of MLflow run {run_id} at {where} cannot be "
                                f"loaded: {e}") from None  # fmt: skip


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Within the block, SIGTERM raises SystemExit(143), as Ctrl-C raises KeyboardInterrupt,
    so `open_sweep_run` can mark its runs KILLED (Python's default SIGTERM ends the
    process without unwinding). For a stage's `main()`; a no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------
# Logging on the machine's other core. MLflow's SQL store spends ~40 ms of Python per
# child run (its ORM handles every metric row), holding the GIL, so a thread beside the
# training only takes turns with it. A forked process logs while the caller trains.


def _transportable(result: RunResult):
    """A small picklable copy of a result: its own arrays, not its group's tensors."""
    import numpy as np

    from bnmodels.run import RunResult

    history = {k: np.asarray(v).copy() for k, v in result.history.items()}
    return RunResult(result.config, history,
                     bool(result.diverged),
                     {k: v.detach().cpu().numpy().copy() for k, v in result.state_dict.items()},
                     result.final)  # fmt: skip


def _forked_worker(parent: SweepRun, in_features: dict, tasks, done) -> None:
    import torch

    torch.set_num_threads(1)
    store = getattr(getattr(parent.client, "_tracking_client", None), "store", None)
    if getattr(store, "engine", None) is not None:
        store.engine.dispose(close=False)  # SQLAlchemy's rule after a fork: own connections

    def term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, term)
    with contextlib.suppress(KeyboardInterrupt, SystemExit):  # Ctrl-C reaches us too
        _serve(parent, in_features, tasks, done)


def _serve(parent: SweepRun, in_features: dict, tasks, done) -> None:
    import torch

    while (chunk := tasks.get()) is not None:
        for r in chunk:
            r.state_dict = {k: torch.from_numpy(v) for k, v in r.state_dict.items()}
        try:
            done.put(parent.log_results(chunk, in_features))
        except BaseException as e:  # the child run being logged is already marked
            done.put(f"{type(e).__name__}: {e}")
            raise


class ForkedLogger:
    """Logs child runs into an open parent run (`open_sweep_run`) from a forked process.

    `submit(results)` queues them and returns at once; `poll()` returns how many runs
    were logged since the last call; `close()` waits for the rest and returns
    {run_key: child run id}. As a context manager it stops the worker on an exception
    (SIGTERM: the worker marks its open child run KILLED).
    """

    def __init__(self, parent: SweepRun, in_features: Mapping[str, int]):
        import multiprocessing

        ctx = multiprocessing.get_context("fork")  # no re-import: starts in milliseconds
        self.tasks, self.done = ctx.Queue(), ctx.Queue()
        args = (parent, dict(in_features), self.tasks, self.done)
        # One worker: a second one measured no faster (SQLite serializes the writes).
        self.procs = [ctx.Process(target=_forked_worker, args=args, daemon=True,
                                  name="mlflow-log")]  # fmt: skip
        for p in self.procs:
            p.start()
        self.pending, self.run_ids, self.abandoned = 0, {}, False

    def submit(self, results: Sequence[RunResult]) -> None:
        self.tasks.put([_transportable(r) for r in results])
        self.pending += 1

    def _collect(self, block: bool) -> int:
        import queue

        n = 0
        while self.pending:
            try:
                got = self.done.get(timeout=1.0) if block else self.done.get_nowait()
            except queue.Empty:
                if not block:
                    break
                if not any(p.is_alive() for p in self.procs):
                    self._abandon()
                    raise TrackingError("the MLflow logging process died") from None
                continue
            if isinstance(got, str):
                self._abandon()
                raise TrackingError(f"logging child runs failed: {got}")
            self.pending -= 1
            self.run_ids.update(got)
            n += len(got)
        return n

    def poll(self) -> int:
        n = self._collect(block=False)
        if self.pending and not any(p.is_alive() for p in self.procs):
            n += self._collect(block=True)  # its last answers, then the error
        return n

    def _abandon(self) -> None:
        """Give up on queued chunks: a queue's feeder thread blocked on a full pipe that
        nobody reads would otherwise keep this process from ever exiting."""
        if not self.abandoned:
            self.abandoned = True
            self.tasks.cancel_join_thread()
            self.tasks.close()

    def close(self) -> dict[str, str]:
        self._collect(block=True)
        for _ in self.procs:
            self.tasks.put(None)
        for p in self.procs:
            p.join(timeout=60)
        return self.run_ids

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        alive = [p for p in self.procs if p.is_alive()]
        if alive and exc_type is None:
            self.close()
        elif exc_type is not None:
            self._abandon()
            for p in alive:
                p.terminate()
            for p in alive:
                p.join(timeout=30)
