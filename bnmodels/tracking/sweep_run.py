"""MLflow tracking of sweeps (SPEC 5): one experiment per sweep, one parent run per sweep
execution, one child run per training run.

Layout in the store (`bnmodels.tracking.store` finds and checks it):

- experiment `bnmodels/<sweep>`, tagged as a machine-learning experiment so the UI opens
  its runs table (not the GenAI traces view);
- parent run `<sweep>` (`<sweep> <experiment>` for a DVC experiment): the caller's tags
  (git commit, DVC stage, params hash, DVC experiment name and baseline), the values of
  each configuration key that varies across the sweep as params, the figures, and the
  sweep's tables `history.csv` (every metric of every run at every epoch) and
  `diagnostics.json`, and the sweep's data sets as run inputs;
- the experiment's landing view `compare` (`bnmodels.tracking.ui_view`): the latest execution's
  configurations compared, mean curves over seeds, written when its parent finishes;
- child run `<run_key>` per result (`bnmodels.tracking.writers`): params, train/test curves,
  final per-layer diagnostics, its data sets (train and test inputs with the plan's md5),
  its real training start and end, and `model.pt`, weights
  that load without running code (`load_run_model`). A diverged run is tagged
  `diverged=true` and its status is FAILED; the others FINISHED.

An execution that did not finish (server down, Ctrl-C, a crash) leaves its parent
FAILED, KILLED or RUNNING; the next execution of the same sweep (same plan, code and
DVC experiment) resumes that parent: it keeps the finished children, deletes the
unfinished ones, and logs only the runs that are missing, so no run is logged twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bnmodels.experiment.config import DESCRIBE_KEYS, RunConfig
from bnmodels.experiment.layout import data_name
from bnmodels.tracking.store import (
    TrackingError,
    env,
    experiment_id,
    redact,
    retrying,
)
from bnmodels.tracking.writers import MODEL_FILE, PARENT_TAG, ChildRun, DataInput, child_run

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from bnmodels.training.result import RunResult

RETRY_S = 60.0  # how long a store that fails mid-sweep is retried before the stage fails
CHUNK = 32  # runs per write: an interruption waits for at most one chunk
DVC_EXP_TAGS = {"DVC_EXP_NAME": "dvc_exp_name", "DVC_EXP_BASELINE_REV": "dvc_exp_baseline_rev"}


def varying_params(configs: Sequence[RunConfig]) -> dict[str, str]:
    """The parent run's params: each configuration key whose value differs across the
    sweep, with its values in order of first appearance (`depth: "1,3"`), and `varying`.
    The normalization by its kind, placement and groups (`bn` is their shorthand)."""
    values = {k: list(dict.fromkeys(getattr(c, k) for c in configs)) for k in DESCRIBE_KEYS}
    varying = {k: v for k, v in values.items() if len(v) > 1}
    return {
        "varying": ",".join(varying) or "-",
        **{k: ",".join(map(str, v)) for k, v in varying.items()},
    }


def metric_names(results: Sequence[RunResult]) -> list[str]:
    """The metrics the results log: their history columns with a finite value."""
    import math

    return sorted(
        {k for r in results for k, v in r.history.items() if any(math.isfinite(x) for x in v)}
    )


def dvc_experiment_tags(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`dvc_exp_name` and `dvc_exp_baseline_rev` when DVC runs a stage for `dvc exp run`
    (it sets DVC_EXP_NAME and DVC_EXP_BASELINE_REV), else nothing."""
    return {tag: environ[var] for var, tag in DVC_EXP_TAGS.items() if environ.get(var)}


def parent_run_name(sweep: str, tags: Mapping[str, str]) -> str:
    """`<sweep>`, or `<sweep> <DVC experiment>`: parallel experiments apart in the UI."""
    exp = tags.get("dvc_exp_name")
    return f"{sweep} {exp}" if exp else sweep


def _status(exc: BaseException) -> str:
    """KILLED for an interruption (Ctrl-C, SIGTERM as SystemExit), FAILED for an error."""
    return "KILLED" if isinstance(exc, KeyboardInterrupt | SystemExit) else "FAILED"


def _end(client: MlflowClient, run_id: str, status: str) -> None:
    # Against a server, MLflow prints "View run" links per ended run: the caller prints
    # `experiment_url` once instead.
    with env(MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true"):
        client.set_terminated(run_id, status)


def _end_quietly(client: MlflowClient, run_id: str, status: str) -> None:
    with contextlib.suppress(Exception), env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"):
        _end(client, run_id, status)  # never hide the exception being handled


@dataclass
class SweepRun:
    """An open parent run of one sweep execution (see `open_sweep_run`)."""

    client: MlflowClient
    uri: str
    sweep: str
    experiment_id: str
    run_id: str
    tags: dict[str, str]
    retry_s: float = RETRY_S
    run_ids: dict[str, str] = field(default_factory=dict)  # run_key -> child run id
    # "<data set>/<normalization>" -> its train and test inputs (`run_writers.data_inputs`)
    inputs: Mapping[str, Sequence[DataInput]] = field(default_factory=dict)

    def child_runs(
        self,
        results: Sequence[RunResult],
        in_features: Mapping[str, int],
        start_ms: int,
        end_ms: int,
    ) -> list[ChildRun]:
        """Records of the results not logged yet (a resumed parent has some)."""
        missing = sorted({r.config.dataset for r in results} - set(in_features))
        if missing:
            raise ValueError(f"in_features has no entry for data set(s) {', '.join(missing)}")
        return [
            child_run(
                r,
                in_features[r.config.dataset],
                self.tags,
                self.run_id,
                self.sweep,
                start_ms,
                end_ms,
                self.inputs.get(data_name(*r.config.data_key), ()),
            )
            for r in results
            if r.config.run_key not in self.run_ids
        ]

    def write(self, runs: Sequence[ChildRun]) -> dict[str, str]:
        """Write child runs (see `run_writers.writer_for`); returns {run_key: run id}."""
        from bnmodels.tracking.writers import writer_for

        ids = writer_for(self.client, self.uri, self.experiment_id, self.retry_s).write(runs)
        self.run_ids.update(ids)
        return ids

    def log_results(
        self,
        results: Sequence[RunResult],
        in_features: Mapping[str, int],
        progress: Callable[[int], object] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> dict[str, str]:
        """Log one child run per result (trained from `start_ms` to `end_ms`, default
        now); returns {run_key: child run id}. `progress(n)` after each chunk of n runs."""
        import time

        keys = [r.config.run_key for r in results]
        if len(set(keys)) != len(keys):
            raise ValueError(f"sweep {self.sweep!r}: results repeat a run_key")
        now = int(time.time() * 1000)
        runs = self.child_runs(results, in_features, start_ms or now, end_ms or now)
        for i in range(0, len(runs), CHUNK):
            self.write(runs[i : i + CHUNK])
            if progress is not None:
                progress(len(runs[i : i + CHUNK]))
        return {k: self.run_ids[k] for k in keys}

    def _try(self, call, what: str):
        return retrying(call, uri=self.uri, retry_s=self.retry_s, what=what)

    def log_texts(self, files: Mapping[str, str]) -> None:
        """Log text files (the sweep's `history.csv`, `diagnostics.json`) on the parent."""
        for name, text in files.items():
            self._try(
                lambda t=text, n=name: self.client.log_text(self.run_id, t, n), f"logging {name}"
            )

    def log_inputs(self) -> None:
        """Log the sweep's data sets on the parent: this also adds the experiment's data set
        rows, once, before any writer of its children runs. Two executions adding the
        same ones at once (queued DVC experiments) can collide on the table's key
        (MLflow reads, then inserts); the second try finds them and links them."""
        from bnmodels.tracking.writers import dataset_inputs

        # a data set's source input is shared by all its splits: once (MLflow's key)
        unique = {(i.name, i.digest): i for pair in self.inputs.values() for i in pair}
        every = dataset_inputs(list(unique.values()))
        try:
            self._try(lambda: self.client.log_inputs(self.run_id, every), "logging the data sets")
        except TrackingError:
            raise
        except Exception:
            self._try(lambda: self.client.log_inputs(self.run_id, every), "logging the data sets")

    def log_view(self, configs: Sequence[RunConfig], metric_names: Sequence[str]) -> str:
        """Write the experiment's landing view of this execution (`bnmodels.tracking.ui_view`);
        returns its key. `metric_names`: the metrics the runs log."""
        import time

        from bnmodels.tracking import ui_view

        varying = [k for k in varying_params(configs) if k != "varying"]
        state = ui_view.view_state(
            self.sweep, self.run_id, varying, metric_names, runs=len(configs)
        )
        n = len({tuple(getattr(c, k) for k in varying if k != "seed") for c in configs})
        name = f"{self.sweep}: {n} configurations, {len(configs)} runs (latest execution)"
        key, value = ui_view.view_tag(state, name, int(time.time() * 1000))
        self._try(
            lambda: self.client.set_experiment_tag(self.experiment_id, key, value),
            "writing the landing view",
        )
        return ui_view.VIEW_KEY

    def remove_orphans(self) -> None:
        """Delete unfinished children that no result points to: a create_run whose answer
        was lost, then retried, leaves one."""
        for run in self._children("attributes.status = 'RUNNING'"):
            if run.info.run_id not in set(self.run_ids.values()):
                self._try(lambda r=run: self.client.delete_run(r.info.run_id), "cleaning up")

    def _children(self, where: str = "") -> list:
        from mlflow.entities import ViewType

        query = f"tags.`{PARENT_TAG}` = '{self.run_id}'" + (f" and {where}" if where else "")
        out, token = [], None
        while True:
            page = self._try(
                lambda t=token: self.client.search_runs(
                    [self.experiment_id],
                    query,
                    ViewType.ACTIVE_ONLY,
                    max_results=10_000,
                    page_token=t,
                ),
                "reading the sweep's runs",
            )
            out += page
            if not (token := page.token):
                return out

    def resume(self) -> None:
        """Keep this parent's finished children (FAILED ones that diverged included);
        delete the others, so that they are logged again, once."""
        for run in self._children():
            key, status = run.data.tags.get("run_key"), run.info.status
            diverged = run.data.tags.get("diverged") == "true"
            done = status == "FINISHED" or (status == "FAILED" and diverged)
            if done and key and key not in self.run_ids:
                self.run_ids[key] = run.info.run_id
            else:
                self._try(lambda r=run: self.client.delete_run(r.info.run_id), "cleaning up")


def _unfinished_parent(client: MlflowClient, experiment: str, name: str, tags: dict) -> str | None:
    """The latest parent run of this sweep with exactly these tags that did not finish."""
    query = f"attributes.run_name = '{name}' and attributes.status != 'FINISHED'"
    for run in client.search_runs(
        [experiment], query, order_by=["attributes.start_time DESC"], max_results=20
    ):
        if PARENT_TAG not in run.data.tags and all(
            run.data.tags.get(k) == v for k, v in tags.items()
        ):
            return run.info.run_id
    return None


@contextlib.contextmanager
def open_sweep_run(
    sweep: str,
    *,
    uri: str,
    tags: Mapping[str, str],
    params: Mapping[str, str] | None = None,
    retry_s: float = RETRY_S,
    inputs: Mapping[str, Sequence[DataInput]] | None = None,
) -> Iterator[SweepRun]:
    """Open the parent run of one execution of `sweep`; close it when the block ends.

    Open it before training so that an interruption anywhere inside is recorded: the
    parent ends FINISHED, KILLED on KeyboardInterrupt or SystemExit (see
    `sigterm_as_exit`), FAILED on any other exception, which propagates. A previous
    execution with the same tags that did not finish is resumed (see the module doc).
    `inputs` (`run_writers.data_inputs`): the sweep's data sets, logged on the parent
    here and on each child with its own.
    """
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    tags = {str(k): str(v) for k, v in tags.items()}
    name = parent_run_name(sweep, tags)

    def start():
        exp = experiment_id(client, uri, sweep)
        previous = _unfinished_parent(client, exp, name, {**tags, "sweep": sweep})
        if previous is not None:
            client.update_run(previous, status="RUNNING")
            return exp, previous
        return exp, client.create_run(exp, run_name=name, tags={**tags, "sweep": sweep}).info.run_id

    exp, run_id = retrying(start, uri=uri, retry_s=retry_s, what="opening the parent run")
    run = SweepRun(client, uri, sweep, exp, run_id, tags, retry_s, inputs=dict(inputs or {}))
    try:
        run.resume()
        if run.inputs:
            run.log_inputs()
        if params:
            from mlflow.entities import Param

            ps = [Param(k, str(v)) for k, v in params.items()]
            run._try(lambda: client.log_batch(run_id, params=ps), "logging params")
        yield run
        run.remove_orphans()
    except BaseException as e:
        _end_quietly(client, run_id, _status(e))
        raise
    run._try(lambda: _end(client, run_id, "FINISHED"), "ending the parent run")


def load_run_model(run_id: str, uri: str):
    """The trained network of a logged child run (an `MLP`, in eval mode), rebuilt from
    its weights-only `model.pt`: nothing in the store can run code here.

    Raises TrackingError when the run is unknown or its weights are gone.
    """
    from mlflow import MlflowClient

    from bnmodels.tracking.weights import load_weights

    client = MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except Exception as e:
        raise TrackingError(f"MLflow run {run_id} not found in {redact(uri)}: {e}") from None
    where = f"{run.info.artifact_uri}/{MODEL_FILE}"
    with tempfile.TemporaryDirectory(prefix="bnmodels-model-") as tmp:
        try:
            with env(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
                local = client.download_artifacts(run_id, MODEL_FILE, tmp)
        except Exception:
            local = None
        if local is None or not Path(local).is_file():
            raise TrackingError(
                f"the model of MLflow run {run_id} is missing: no {MODEL_FILE} at {where} "
                "(its artifacts were deleted, or it was not logged)"
            )
        try:
            return load_weights(local)
        except Exception as e:
            raise TrackingError(
                f"the model of MLflow run {run_id} at {where} cannot be loaded: {e}"
            ) from None


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
