"""The team tracking server (`make server`): PostgreSQL with a password + `mlflow server`
with users (MLflow's basic-auth app) over TLS, on loopback; every refusal (no or wrong
credentials, a reader writing, plain HTTP, an untrusted certificate, the database without
its password), an editor's pipeline logging through it, models loaded back weights-only,
no secret where it should not be, and a server killed or its database stopped in the
middle of a sweep. Skipped only where PostgreSQL's binaries are absent."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))

pytestmark = [
    pytest.mark.slow,  # servers and dvc repro: not in make test-fast
    pytest.mark.skipif(
        not (PG_BIN / "initdb").exists(),
        reason=f"PostgreSQL binaries absent from {PG_BIN} (Debian/Ubuntu: apt install postgresql)",
    ),
]

PARAMS = """\
datasets:
  tiny: {num_examples: 60, w: [2, -1], bias: false, delta: 0.01, deg: 2, seed: 420,
         train_fraction: 0.7}
defaults: {dataset: tiny, normalization: none, activation: sigmoid, bn: none, depth: 1,
           width: 4, init: default, momentum: 0.1, batch_size: 10, lr: 0.03, epochs: 3,
           seed: 24}
sweeps:
  small: {bn: [none, pre], activation: [relu, tanh], seed: [24, 25]}
  big: {bn: [none, pre, post], depth: [1, 2], seed: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}
  mid: {bn: [none, pre, post], depth: [1, 2], seed: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}
execution: {log_retry_s: 3}
claims: {}
file_datasets: {}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(cmd, cwd, check=True, timeout=600, **env) -> subprocess.CompletedProcess:
    e = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    e = {k: v for k, v in e.items() if v is not None}  # None: unset
    p = subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode:
        raise AssertionError(f"{cmd} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


class Server:
    def __init__(self):
        # PostgreSQL runs as the `postgres` user when we are root: its folder must be
        # reachable by that user, which pytest's private temporary folders are not.
        self.dir = Path(tempfile.mkdtemp(prefix="bnmodels-server-"))
        self.dir.chmod(0o755)
        self.port, self.pg_port = _free_port(), _free_port()
        self.uri = f"https://127.0.0.1:{self.port}"
        self.cert = self.dir / "tls" / "cert.pem"
        self.make = [
            "make",
            "-s",
            "-C",
            str(ROOT),
            f"SERVER_DIR={self.dir}",
            f"PORT={self.port}",
            f"PG_PORT={self.pg_port}",
        ]

    def start(self):
        return sh([*self.make, "server"], ROOT, timeout=300)

    def credentials(self, name: str = "admin") -> tuple[str, str]:
        """A user's name and password, from the file `make server(-user)` wrote."""
        path = self.dir / ("credentials" if name == "admin" else f"users/{name}.credentials")
        config = configparser.ConfigParser()
        config.read(path)
        section = config["mlflow"]
        return section["mlflow_tracking_username"], section["mlflow_tracking_password"]

    def add_user(self, name: str, role: str, experiment: str = "") -> str:
        extra = [f"EXPERIMENT={experiment}"] if experiment else []
        return sh([*self.make, "server-user", f"NAME={name}", f"ROLE={role}", *extra], ROOT).stdout

    def env(self, name: str = "admin", **more) -> dict:
        """What a client of this server sets: the URI, the certificate, an account."""
        user, password = self.credentials(name)
        return {
            "MLFLOW_TRACKING_URI": self.uri,
            "MLFLOW_TRACKING_SERVER_CERT_PATH": str(self.cert),
            "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": password,
            **more,
        }

    def secrets(self) -> list[str]:
        """Every password and key `make server` and `make server-user` generated."""
        found = [self.credentials()[1], (self.dir / "secret_key").read_text().strip()]
        found.append((self.dir / "pgpass").read_text().strip().rsplit(":", 1)[1])
        found += [self.credentials(p.stem)[1] for p in (self.dir / "users").glob("*.credentials")]
        return found

    def stop(self):
        return sh([*self.make, "server-stop"], ROOT, timeout=120)

    def kill_mlflow(self):
        """What a crash does: the server and its workers gone at once, no clean-up."""
        os.killpg(int((self.dir / "mlflow.pid").read_text()), signal.SIGKILL)

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.uri}/health", verify=self.cert, timeout=2).ok
        except requests.RequestException:
            return False

    def sql(self, query: str) -> str:
        return sh(
            [
                str(PG_BIN / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.pg_port),
                "-U",
                "mlflow",
                "-d",
                "mlflow",
                "-tAc",
                query,
            ],
            ROOT,
            PGPASSFILE=str(self.dir / "pgpass"),
        ).stdout.strip()


@pytest.fixture(scope="module")
def server():
    s = Server()
    out = s.start().stdout
    assert f"Admin credentials: {s.dir}/credentials" in out, out
    s.add_user("editor", "editor")
    s.add_user("reader", "reader")
    yield s
    s.stop()
    shutil.rmtree(s.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory, server) -> Path:
    """A fresh repository with the pipeline and a tiny params.yaml, logging to the server."""
    d = tmp_path_factory.mktemp("repo")
    for name in ("bnmodels", "stages"):
        shutil.copytree(ROOT / name, d / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "registry.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, d / name)
    (d / "params.yaml").write_text(PARAMS)
    sh(["git", "init", "-q"], d)
    sh(["dvc", "init", "-q"], d)
    sh(["dvc", "config", "core.analytics", "false"], d)
    return d


@pytest.fixture
def client_env(server, monkeypatch):
    """This process as a client of the server: `client_env("editor")` sets its variables."""

    def use(name: str = "admin") -> None:
        for k, v in server.env(name).items():
            monkeypatch.setenv(k, v)

    return use


def test_make_server_serves_mlflow_with_users_over_tls_on_postgresql_on_loopback(server):
    assert server.healthy()
    assert server.sql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs'")
    pid = (server.dir / "mlflow.pid").read_text().strip()
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"--host" in cmdline and cmdline[cmdline.index(b"--host") + 1] == b"127.0.0.1"
    assert b"--artifacts-destination" in cmdline
    assert cmdline[cmdline.index(b"--app-name") + 1] == b"basic-auth"
    assert b"--ssl-certfile" in cmdline[cmdline.index(b"--uvicorn-opts") + 1]
    assert cmdline[cmdline.index(b"--allowed-hosts") + 1].split(b",") == [
        f"127.0.0.1:{server.port}".encode(),
        f"localhost:{server.port}".encode(),
    ]
    for name in ("credentials", "pgpass", "secret_key", "users/editor.credentials"):
        assert (server.dir / name).stat().st_mode & 0o777 == 0o600, name
    # a Host header it does not serve is refused (DNS rebinding)
    api = f"{server.uri}/api/2.0/mlflow/experiments/search"
    r = requests.get(api, verify=server.cert, headers={"Host": "evil.example"}, timeout=5)
    assert r.status_code == 403, r.status_code


def test_every_refusal_of_the_server_and_its_database(server):
    api = f"{server.uri}/api/2.0/mlflow/experiments"
    search = f"{api}/search?max_results=1"
    admin = server.credentials()
    assert requests.get(search, verify=server.cert, timeout=10).status_code == 401
    wrong = (admin[0], admin[1] + "x")
    assert requests.get(search, verify=server.cert, auth=wrong, timeout=10).status_code == 401
    assert requests.get(search, verify=server.cert, auth=admin, timeout=10).status_code == 200
    # a reader reads, and may not write an experiment someone else made
    editor, reader = server.credentials("editor"), server.credentials("reader")
    r = requests.post(
        f"{api}/create", json={"name": "refusals"}, verify=server.cert, auth=editor, timeout=10
    )
    assert r.status_code == 200, r.text
    exp_id = r.json()["experiment_id"]
    got = requests.get(f"{api}/get?experiment_id={exp_id}", verify=server.cert, auth=reader)
    assert got.status_code == 200
    tag = {"experiment_id": exp_id, "key": "k", "value": "v"}
    r = requests.post(f"{api}/set-experiment-tag", json=tag, verify=server.cert, auth=reader)
    assert r.status_code == 403
    r = requests.post(f"{api}/set-experiment-tag", json=tag, verify=server.cert, auth=editor)
    assert r.status_code == 200
    # TLS only, with a certificate a client that was not given it does not trust
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{server.port}/health", timeout=10)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{server.uri}/health", timeout=10)
    # the database: loopback only, a password for every connection, no `trust` line
    no_password = sh(
        [str(PG_BIN / "psql"), "-w", "-h", "127.0.0.1", "-p", str(server.pg_port), "-U",
         "mlflow", "-d", "mlflow", "-c", "SELECT 1"],
        ROOT, check=False, PGPASSFILE=os.devnull, PGPASSWORD=None,
    )  # fmt: skip
    assert no_password.returncode != 0 and "no password supplied" in no_password.stderr
    assert server.sql("SHOW listen_addresses") == "127.0.0.1"
    assert server.sql("SHOW password_encryption") == "scram-sha-256"
    hba = server.sql("SELECT string_agg(DISTINCT auth_method, ',') FROM pg_hba_file_rules")
    assert hba == "scram-sha-256"


def test_listening_beyond_loopback_needs_auth_and_tls(server):
    for off in ({"AUTH": "off"}, {"TLS": "off"}):
        out = sh([*server.make, "server", "HOST=0.0.0.0"], ROOT, check=False, **off)
        assert out.returncode != 0 and "needs AUTH=on and TLS=on" in out.stderr, out


def test_an_editors_tiny_pipeline_logs_through_the_server_into_postgresql(server, repo, client_env):
    import torch
    from mlflow import MlflowClient

    from bnmodels.experiment.data import load_split
    from bnmodels.tracking import load_run_model

    out = sh(["dvc", "repro", "train@small"], repo, **server.env("editor"))
    runs = pd.read_csv(repo / "runs" / "small" / "runs.csv")
    assert len(runs) == 8 and runs["mlflow_run_id"].is_unique
    ids = ",".join(f"'{i}'" for i in runs["mlflow_run_id"])
    assert server.sql(f"SELECT count(*) FROM runs WHERE run_uuid IN ({ids})") == "8"
    client_env("reader")  # what the editor logged, anyone reads
    client = MlflowClient(server.uri)
    for row in runs.itertuples():
        run = client.get_run(row.mlflow_run_id)
        assert run.info.status == "FINISHED" and run.data.params["seed"] == str(row.seed)
        assert [m.step for m in client.get_metric_history(row.mlflow_run_id, "test_mse")] == [
            1,
            2,
            3,
        ]
    # the weights come back through the server's proxied artifacts, weights only
    row = runs.iloc[0]
    model = load_run_model(row.mlflow_run_id, server.uri)
    split = load_split(repo / "data" / "processed" / "tiny" / f"{row.normalization}.pt")
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(model(split.x_test), split.y_test).item()
    assert mse == pytest.approx(row.final_test_mse, rel=1e-6)
    assert list((server.dir / "artifacts").rglob("model.pt"))
    links = sh(["bnmodels", "links"], repo, **server.env("reader")).stdout
    exp_id = client.get_experiment_by_name("bnmodels/small").experiment_id
    assert f"{server.uri}/#/experiments/{exp_id}/runs" in links, links
    # no secret in the stage's log, in any param or tag, or in a file git would commit
    logged = server.sql(
        "SELECT string_agg(value, ' ') FROM (SELECT value FROM params UNION ALL "
        "SELECT value FROM tags UNION ALL SELECT value FROM experiment_tags) v"
    )
    sh(["git", "add", "-A"], repo)
    staged = sh(["git", "grep", "--cached", "-I", "-e", "."], repo).stdout
    tracked = sh(["git", "ls-files"], ROOT).stdout
    for secret in server.secrets():
        assert secret not in out.stdout + out.stderr
        assert secret not in logged
        assert secret not in staged
    assert not any(line.startswith(".server") for line in tracked.splitlines())
    assert ".server/" in (ROOT / ".gitignore").read_text().split()


def test_the_ui_over_https_shows_the_landing_view_to_the_admin_and_refuses_no_credentials(
    server, repo, tmp_path
):
    """Headless Chromium (Debian's `chromium`, as `make ui-check`) trusting the server's
    certificate by its public key: the sweep's link, with the admin's credentials sent
    with every request, renders the landing view of the editor's sweep (8 runs compared);
    without them, the page is refused (HTTP 401 asking for basic auth; Chromium's own
    login dialog, pending forever in headless mode, is not driven here)."""
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    sys.path.insert(0, str(ROOT / "scripts"))
    from ui_check import page_text

    if not shutil.which("chromium"):
        pytest.skip("no chromium (apt-get install chromium)")
    cert = x509.load_pem_x509_certificate(server.cert.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    trust = f"--ignore-certificate-errors-spki-list={pin}"  # this certificate's key only
    sh(["dvc", "repro", "train@small"], repo, **server.env("editor"))
    links = sh(["bnmodels", "links"], repo, **server.env("reader")).stdout
    link = next(line.split()[1] for line in links.splitlines() if line.startswith("bnmodels/small"))
    basic = base64.b64encode(":".join(server.credentials()).encode()).decode()
    text = page_text(
        link, {"Authorization": f"Basic {basic}"}, tmp_path / "a", "8 matching runs",
        flags=(trust,),
    )  # fmt: skip
    assert "viewing a shared view" in text and "8 matching runs" in text, text[-3000:]
    for activation in ("relu", "tanh"):  # every configuration, its seeds grouped (the
        for norm in ("norm: none, norm_at: none", "norm: batch, norm_at: pre"):  # bn: none|pre
            assert f"Group: activation: {activation}, {norm}" in text, text[-3000:]
    # without credentials, the same page is refused (what the browser is sent)
    refused = requests.get(link, verify=server.cert, timeout=10)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    "wrong, says",
    [
        ({"MLFLOW_TRACKING_PASSWORD": "not-it"}, "refused the credentials of user 'editor'"),
        ({"MLFLOW_TRACKING_USERNAME": None, "MLFLOW_TRACKING_PASSWORD": None}, "without"),
        ("reader", "user 'reader' may read but not write experiment bnmodels/small"),
        ({"MLFLOW_TRACKING_SERVER_CERT_PATH": None}, "certificate is not trusted"),
        ("http", "answers HTTPS only: set MLFLOW_TRACKING_URI to https://"),
    ],
)
def test_a_client_the_server_would_refuse_fails_before_training_with_one_line(
    server, repo, wrong, says
):
    """Each refusal, on a sweep already logged (so the reader meets an experiment it may
    not write): one line naming the server and what to do, no training, nothing changed."""
    sh(["dvc", "repro", "train@small"], repo, **server.env("editor"))  # logged once
    if wrong == "reader":
        env = server.env("reader")
    elif wrong == "http":
        env = server.env("editor", MLFLOW_TRACKING_URI=server.uri.replace("https", "http"))
    else:
        env = server.env("editor", **wrong)
    before = (repo / "runs" / "small" / "runs.csv").read_bytes()
    count = server.sql("SELECT count(*) FROM runs")
    out = sh(["dvc", "repro", "-f", "train@small"], repo, check=False, **env)
    assert out.returncode != 0
    errors = [line for line in (out.stdout + out.stderr).splitlines() if "error:" in line]
    assert len(errors) >= 1 and says in errors[0] and f"127.0.0.1:{server.port}" in errors[0]
    assert "Traceback" not in out.stdout + out.stderr
    assert (repo / "runs" / "small" / "runs.csv").read_bytes() == before
    assert server.sql("SELECT count(*) FROM runs") == count


def _sweep_runs(server, sweep: str) -> list:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    from bnmodels.tracking.store import env

    with env(**{k: v for k, v in server.env().items() if k != "MLFLOW_TRACKING_URI"}):
        client = MlflowClient(server.uri)
        exp = client.get_experiment_by_name(f"bnmodels/{sweep}")
        if exp is None:
            return []
        return client.search_runs([exp.experiment_id], "", ViewType.ACTIVE_ONLY, max_results=5000)


def _interrupt_mid_sweep(server, repo, sweep: str, fault) -> str:
    """`dvc repro train@<sweep>` as the editor, `fault()` once 3 child runs are in; its
    output (it must fail)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **server.env("editor")}
    proc = subprocess.Popen(
        ["dvc", "repro", f"train@{sweep}"],
        cwd=repo,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:  # the fault once some child runs are in, well before all 60
        deadline = time.monotonic() + 300
        while sum("run_key" in r.data.tags for r in _sweep_runs(server, sweep)) < 3:
            assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
        fault()
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "failed for 3 s" in out and server.uri in out, out
    assert "Traceback" not in out, out
    assert not (repo / "runs" / sweep).exists()  # nothing half-written
    return out


def _logged_once(server, repo, sweep: str) -> None:
    sh(["dvc", "repro", f"train@{sweep}"], repo, **server.env("editor"))
    runs = pd.read_csv(repo / "runs" / sweep / "runs.csv")
    assert len(runs) == 60 and runs["mlflow_run_id"].is_unique
    logged = _sweep_runs(server, sweep)
    children = [r for r in logged if "run_key" in r.data.tags]
    parents = [r for r in logged if "run_key" not in r.data.tags]
    assert sorted(r.data.tags["run_key"] for r in children) == sorted(runs["run_key"])
    assert {r.info.run_id for r in children} == set(runs["mlflow_run_id"])
    assert [r.info.status for r in parents] == ["FINISHED"]
    assert {r.info.status for r in children} == {"FINISHED"}


def test_the_server_killed_mid_sweep_fails_the_stage_clearly_and_the_rerun_completes(server, repo):
    _interrupt_mid_sweep(server, repo, "big", server.kill_mlflow)
    server.start()  # back: the next repro logs the whole sweep once
    _logged_once(server, repo, "big")


def test_the_database_stopped_mid_sweep_fails_the_stage_clearly_and_the_rerun_completes(
    server, repo
):
    pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    pgdata = str(server.dir / "pg" / "data")
    stop = [*pg, str(PG_BIN / "pg_ctl"), "-D", pgdata, "-m", "fast", "-w", "stop"]
    _interrupt_mid_sweep(server, repo, "mid", lambda: sh(stop, ROOT))
    server.start()  # the database back (the MLflow server kept running)
    _logged_once(server, repo, "mid")


def test_two_dvc_queue_workers_log_their_experiments_into_the_server_once_each(server, repo):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    editor = server.env("editor")
    sh(["dvc", "repro", "train@small"], repo, **editor)
    sh(["git", "add", "-A"], repo)
    sh([*git, "commit", "-q", "-m", "baseline"], repo)
    names = []
    for seeds in ("[24,26]", "[24,27]"):
        out = sh(["dvc", "exp", "run", "--queue", "-S", f"sweeps.small.seed={seeds}"], repo)
        names.append(re.search(r"Queued experiment '([^']+)'", out.stdout).group(1))
    sh(["dvc", "queue", "start", "--jobs", "2"], repo, **editor)
    deadline = time.monotonic() + 600
    while any(
        w in (status := sh(["dvc", "queue", "status"], repo).stdout) for w in ("Running", "Queued")
    ):
        assert time.monotonic() < deadline, status
        time.sleep(2)
    assert status.count("Success") == 2, status
    logged = _sweep_runs(server, "small")
    for name in names:
        parents = [
            r
            for r in logged
            if r.data.tags.get("dvc_exp_name") == name and "run_key" not in r.data.tags
        ]
        assert [(p.info.run_name, p.info.status) for p in parents] == [
            (f"small {name}", "FINISHED")
        ]
        assert parents[0].data.tags["dvc_exp_baseline_rev"]
        children = [
            r for r in logged if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
        ]
        assert len(children) == 8 and len({c.data.tags["run_key"] for c in children}) == 8
        assert {c.info.status for c in children} == {"FINISHED"}


def test_make_server_stop_stops_mlflow_and_postgresql_and_leaves_nothing(server):
    pid = int((server.dir / "mlflow.pid").read_text())
    server.stop()
    assert not server.healthy()
    for port in (server.port, server.pg_port):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
    # zombies (state Z: ended, not yet reaped by whoever adopted them) run nothing
    left = sh(["ps", "-eo", "pid,pgid,stat,args"], ROOT).stdout.splitlines()
    left = [p for p in left if not p.split()[2].startswith("Z")]
    assert not [p for p in left if p.split()[1] == str(pid) or str(server.dir) in p]
    server.start()  # and it starts again on the same data, with the same admin
    assert server.healthy()
    search = f"{server.uri}/api/2.0/mlflow/experiments/search?max_results=1"
    r = requests.get(search, verify=server.cert, auth=server.credentials(), timeout=10)
    assert r.status_code == 200


def test_the_bulk_sql_writer_stores_what_mlflows_own_client_stores_on_postgresql(
    server, monkeypatch
):
    """The SQL bulk path on PostgreSQL (every other PostgreSQL test goes through the HTTP
    server): two fresh databases on the cluster of `make server`, the same check as on
    SQLite (tests/test_tracking.py); the password from the server's pgpass file."""
    from test_tracking import SPEC, bulk_vs_client, make_results

    from bnmodels.experiment.data import generate

    monkeypatch.setenv("PGPASSFILE", str(server.dir / "pgpass"))
    uris = {}
    for name in ("client", "bulk"):
        server.sql(f"CREATE DATABASE parity_{name}")
        uris[name] = f"postgresql+psycopg2://mlflow@127.0.0.1:{server.pg_port}/parity_{name}"
    bulk_vs_client(uris, make_results(generate(SPEC)))
