"""`make ui-check`: each sweep's landing view, loaded in a real browser, shows the comparison.

1. Builds a tiny store with the product's own code: two data sets generated and saved
   as the normalize stage saves them, two tiny sweeps (regression: bn x depth x 2 seeds;
   classification: bn x 2 seeds, 4 epochs) trained by the reference engine and logged by
   `train_and_log`, the train stage's own path (child runs, data set inputs, the landing view).
2. Starts `mlflow ui` on a free loopback port, on that store.
3. Opens each link `bnmodels links` prints in headless Chromium (`--dump-dom`, with
   `--virtual-time-budget` so the page's requests finish) and checks the rendered page:
   the view applied (no error), one chart per curve the sweep logs, titled with the
   metric's name, and every configuration of the sweep in the page (a group per
   configuration: `bn: pre, depth: 2`); then a screenshot of the first sweep's view
   (`--out`, default docs/ui-landing.png).

Every process it starts is stopped, also on failure or Ctrl-C. Exits 1 with what is
missing. Needs `chromium` (Debian's package) on PATH, or CHROMIUM=/path/to/chrome.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import click

from bnmodels.cli import sweep_links
from bnmodels.experiment.config import ClusterSpec, DatasetSpec, Execution, RunConfig
from bnmodels.experiment.data import generate, save_split
from bnmodels.experiment.layout import data_file
from bnmodels.tracking import store, sweep_run, ui_view
from bnmodels.tracking.train_and_log import train_and_log
from bnmodels.tracking.writers import data_inputs

EPOCHS = 4
REGRESSION = DatasetSpec(
    name="quad",
    num_examples=120,
    w=(2.0, -1.0),
    bias=False,
    delta=0.01,
    deg=2,
    seed=7,
    train_fraction=0.7,
    feature_scale=(1.0, 1.0),
    feature_shift=(0.0, 0.0),
)
CLASSES = ClusterSpec("blobs", 3, 40, 2, 3.0, 1.5, 420, 0.7, (1.0,) * 2, (0.0,) * 2)


def tiny_sweeps() -> dict[str, tuple]:
    """{sweep: (data spec, its run configurations)}, 12 runs in all."""
    base = RunConfig("quad", "none", "relu", "none", 1, 8, "default", 0.1, 10, 0.03, EPOCHS, 1)
    regression = [
        replace(base, bn=bn, norm=None, depth=depth, seed=seed)
        for bn in ("none", "pre")
        for depth in (1, 2)
        for seed in (1, 2)
    ]
    cla = replace(base, dataset="blobs", lr=0.1)
    classification = [
        replace(cla, bn=bn, norm=None, seed=seed) for bn in ("none", "pre") for seed in (1, 2)
    ]
    return {"regression": (REGRESSION, regression), "classification": (CLASSES, classification)}


def build_store(root: Path) -> str:
    """Train and log the tiny sweeps into `root/mlflow.db`; returns the store's URI."""
    uri = f"sqlite:///{root}/mlflow.db"
    for sweep, (spec, configs) in tiny_sweeps().items():
        split = generate(spec)
        path = data_file(root / "processed", spec.name, "none")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_split(split, path)
        md5 = {f"{spec.name}/none": hashlib.md5(path.read_bytes()).hexdigest()}
        train_and_log(
            sweep,
            configs,
            {configs[0].data_key: split},
            execution=Execution(engine="reference", workers=1),
            uri=uri,
            inputs=data_inputs(md5, root / "processed"),
        )
    return uri


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_ui(uri: str, port: int, log: Path):
    """`mlflow ui` on 127.0.0.1:`port` for the block; its whole process group is stopped
    after (it forks gunicorn/uvicorn workers)."""
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--workers", "1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)], stdout=out, stderr=out, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    why = log.read_text()[-2000:]
                    raise SystemExit(f"mlflow ui did not start:\n{why}") from None
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def chromium() -> str:
    exe = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        raise SystemExit("no chromium on PATH: apt-get install chromium (or set CHROMIUM)")
    return exe


def browse(
    url: str, profile: Path, screenshot: Path, budget_ms: int = 60_000, flags: tuple = ()
) -> str:
    """The page's DOM after `budget_ms` of virtual time, and its screenshot, from a
    headless Chromium that ends with the call. Virtual time stands still while requests
    are pending; the charts need ~60 s of it to fetch and draw their curves (30 s left
    them spinning), ~20 s of real time. `flags`: more of Chromium's command line."""
    cmd = [chromium(), "--headless", "--disable-gpu", "--no-first-run", "--hide-scrollbars"]
    cmd += [f"--user-data-dir={profile}", "--window-size=1600,1000"]
    cmd += [f"--virtual-time-budget={budget_ms}", f"--screenshot={screenshot}", "--dump-dom"]
    cmd += [*flags, url]
    if os.geteuid() == 0:
        cmd.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"chromium did not finish in 180 s: {url}") from None
    finally:  # its whole group (renderer, GPU, zygote ...), also on a timeout or Ctrl-C
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"chromium failed ({proc.returncode}):\n{err[-2000:]}")
    return out


def page_text(
    url: str, headers: dict, profile: Path, wait_for: str, timeout_s: float = 120, flags=()
) -> str:
    """The text of the page at `url`, loaded by headless Chromium sending `headers` with
    every request (e.g. basic auth: a URL with credentials in it breaks the UI's fetches),
    once it holds `wait_for` or after `timeout_s`. Driven through the DevTools protocol
    on a pipe (`--remote-debugging-pipe`: commands on fd 3, replies and events on fd 4,
    NUL-separated JSON), so no port and no other package."""
    import json

    cmd = [chromium(), "--headless", "--disable-gpu", "--no-first-run", "--remote-debugging-pipe"]
    cmd += [f"--user-data-dir={profile}", "--window-size=1600,1000", *flags, "about:blank"]
    if os.geteuid() == 0:
        cmd.insert(1, "--no-sandbox")
    to_child, from_parent = os.pipe()
    to_parent, from_child = os.pipe()

    def on_pipe_fds():
        a, b = os.dup(to_child), os.dup(from_child)
        os.dup2(a, 3)
        os.dup2(b, 4)

    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        pass_fds=(3, 4), preexec_fn=on_pipe_fds,
    )  # fmt: skip
    os.close(to_child)
    os.close(from_child)
    replies = os.fdopen(to_parent, "rb")
    buffer, ids = b"", iter(range(1, 10**6))

    def send(method: str, session: str | None = None, **params) -> dict:
        nonlocal buffer
        i = next(ids)
        msg = {"id": i, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(from_parent, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in buffer:
                chunk = replies.read1(65536)
                if not chunk:
                    raise SystemExit(f"chromium closed its DevTools pipe ({method})")
                buffer += chunk
            raw, buffer = buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == i:  # events (no id) are not needed here
                if "error" in reply:
                    raise SystemExit(f"chromium: {method}: {reply['error']}")
                return reply.get("result", {})

    try:
        target = send("Target.createTarget", url="about:blank")["targetId"]
        session = send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        send("Network.enable", session)
        send("Network.setExtraHTTPHeaders", session, headers=headers)
        send("Page.navigate", session, url=url)
        deadline, text = time.monotonic() + timeout_s, ""
        while time.monotonic() < deadline and wait_for not in text:
            time.sleep(0.5)
            got = send("Runtime.evaluate", session, expression="document.body.innerText")
            text = got.get("result", {}).get("value") or ""
        return text
    finally:  # its whole group (renderer, GPU, zygote ...), also on a failure or Ctrl-C
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        replies.close()
        os.close(from_parent)


def expected(configs: list[RunConfig], metrics: list[str]) -> dict:
    """What the page must show: the curves the runs log, each configuration's label as
    MLflow names a group (`bn: pre, depth: 2`, or the value alone for one key), and the
    number of runs."""
    varying = [k for k in sweep_run.varying_params(configs) if k not in ("varying", "seed")]
    if len(varying) == 1:
        groups = {str(getattr(c, varying[0])) for c in configs}
    else:
        groups = {", ".join(f"{k}: {getattr(c, k)}" for k in varying) for c in configs}
    curves = [m for m in ui_view.CURVES if m in metrics]
    return {"curves": curves, "configurations": sorted(groups), "runs": len(configs)}


def check_page(dom: str, want: dict) -> list[str]:
    """What `want` names that the rendered page lacks (an empty list: all there): the
    view applied, and in every curve's chart a line (its legend entry, `<group>
    (<metric>)`) for every configuration, over all the sweep's runs."""
    text = re.sub(r"<[^>]+>", " ", dom)
    text = re.sub(r"\s+", " ", text)
    missing = []
    if "Error loading shared view state" in text or "viewing a shared view" not in text:
        missing.append("the view (not applied)")
    if f"{want['runs']} matching runs" not in text:
        missing.append(f"'{want['runs']} matching runs'")
    for m in want["curves"]:
        lines = [g for g in want["configurations"] if f"{g} ({m})" not in text]
        if len(lines) == len(want["configurations"]):
            missing.append(f"chart {m}")
        else:
            missing += [f"{m} line of '{g}'" for g in lines]
    return missing


def screenshot(uri: str, sweep: str, out: str) -> None:
    """Serve an existing store (the pipeline's) and save `sweep`'s landing view to `out`:
    the README's picture, taken from a real sweep of the defaults."""
    tmp = Path(tempfile.mkdtemp(prefix="bnmodels-ui-shot-"))
    try:
        with mlflow_ui(uri, free_port(), tmp / "mlflow-ui.log") as ui:
            link = sweep_links(uri, ui)[store.experiment_name(sweep)]
            shot = tmp / "shot.png"
            browse(link, tmp / "profile", shot, budget_ms=120_000)
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, out)
        click.echo(f"{sweep}: {link} -> {out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@click.command()
@click.option("--out", default="docs/ui-landing.png", show_default=True, type=click.Path())
@click.option("--keep", is_flag=True, help="keep the store and the page dumps (printed)")
@click.option(
    "--store",
    "store_uri",
    default=None,
    help="only a screenshot of --sweep's view in this existing store (sqlite:///mlflow.db)",
)
@click.option("--sweep", default="batch_size", show_default=True, help="with --store")
def main(out: str, keep: bool, store_uri: str | None, sweep: str):
    """Build a tiny store, serve it with `mlflow ui`, and check each sweep's landing view
    in headless Chromium; save a screenshot of the first to OUT. With --store, only save
    a screenshot of one sweep's view in an existing store."""
    if store_uri:
        screenshot(store_uri, sweep, out)
        return
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bnmodels-ui-check-"))
    try:
        uri = build_store(tmp)
        click.echo(f"store: {len(tiny_sweeps())} tiny sweeps in {time.monotonic() - started:.0f} s")
        failures = []
        with mlflow_ui(uri, free_port(), tmp / "mlflow-ui.log") as ui:
            links = sweep_links(uri, ui)
            for n, (sweep, (_, configs)) in enumerate(tiny_sweeps().items()):
                link = links[store.experiment_name(sweep)]
                shot = tmp / f"{sweep}.png"
                dom = browse(link, tmp / f"profile-{sweep}", shot)
                (tmp / f"{sweep}.html").write_text(dom)
                want = expected(configs, _logged_metrics(uri, sweep))
                missing = check_page(dom, want)
                status = "ok" if not missing else "MISSING " + "; ".join(missing)
                click.echo(f"{sweep}: {link}\n  {want} -> {status}")
                failures += [f"{sweep}: {m}" for m in missing]
                if n == 0:
                    Path(out).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(shot, out)
        took = time.monotonic() - started
        if failures:
            raise SystemExit(f"ui-check failed after {took:.0f} s: " + "; ".join(failures))
        click.echo(f"ui-check passed in {took:.0f} s; screenshot: {out}")
    finally:
        if keep:
            click.echo(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _logged_metrics(uri: str, sweep: str) -> list[str]:
    """The metric names the sweep's child runs logged, read back from the store."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(store.experiment_name(sweep))
    runs = client.search_runs([exp.experiment_id], "tags.`mlflow.parentRunId` != ''")
    return sorted({k for r in runs for k in r.data.metrics})


if __name__ == "__main__":
    main()
