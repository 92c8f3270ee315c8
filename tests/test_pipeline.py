"""End to end: `dvc repro` on a tiny params file in a temporary git repository."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

PARAMS = """\
datasets:
  tiny: {num_examples: 60, w: [2, -1], bias: false, delta: 0.01, deg: 2, seed: 420,
         train_fraction: 0.7}
defaults: {dataset: tiny, normalization: none, activation: sigmoid, bn: none, depth: 1,
           width: 4, init: default, momentum: 0.1, batch_size: 10, lr: 0.03, epochs: 3,
           seed: 24}
sweeps:
  alpha: {bn: [none, pre], seed: [24, 25]}
  beta: {activation: [relu, tanh], normalization: zscore, seed: [24, 25]}
"""

pytestmark = pytest.mark.skipif(shutil.which("dvc", path=str(BIN)) is None,
                                reason="dvc is not installed in this environment")  # fmt: skip


def sh(cmd: list[str], cwd: Path, check=True, **env) -> subprocess.CompletedProcess:
    e = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    e.pop("MLFLOW_TRACKING_URI", None)
    for k, v in env.items():
        e[k] = v
    p = subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, text=True)
    if check and p.returncode:
        raise AssertionError(f"{cmd} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def digest(folder: Path) -> dict[str, str]:
    return {
        str(f.relative_to(folder)): hashlib.md5(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A fresh repository with the project's pipeline and a tiny params.yaml, reproduced."""
    d = tmp_path_factory.mktemp("repo")
    for name in ("bnmodels", "stages"):
        shutil.copytree(ROOT / name, d / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, d / name)
    (d / "params.yaml").write_text(PARAMS)
    sh(["git", "init", "-q"], d)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty",
        "-m", "empty"], d)  # fmt: skip
    sh(["dvc", "init", "-q"], d)
    sh(["dvc", "config", "core.analytics", "false"], d)
    sh(["dvc", "repro"], d)
    return d


def test_every_configuration_has_its_rows_and_its_mlflow_run(repo):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    for sweep, n in (("alpha", 4), ("beta", 4)):
        runs = pd.read_csv(repo / "runs" / sweep / "runs.csv")
        history = pd.read_csv(repo / "runs" / sweep / "history.csv")
        assert len(runs) == n and runs["run_key"].is_unique
        assert len(history) == n * 3
        assert set(history["run_key"]) == set(runs["run_key"])
        for row in runs.itertuples():
            run = client.get_run(row.mlflow_run_id)
            assert run.data.params["seed"] == str(row.seed)
            assert run.data.params["activation"] == row.activation
            assert run.data.tags.get("mlflow.parentRunId")
            steps = client.get_metric_history(row.mlflow_run_id, "test_mse")
            assert sorted(m.step for m in steps) == [1, 2, 3]
            assert steps[-1].value == pytest.approx(row.final_test_mse, rel=1e-6)


def test_a_logged_model_loads_and_reproduces_its_final_test_mse(repo):
    import torch

    from bnmodels.data import load_split
    from bnmodels.tracking import load_run_model

    runs = pd.read_csv(repo / "runs" / "beta" / "runs.csv")
    row = runs.iloc[0]
    model = load_run_model(row.mlflow_run_id, f"sqlite:///{repo / 'mlflow.db'}")
    split = load_split(repo / "data" / "processed" / "tiny" / f"{row.normalization}.pt")
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(model(split.x_test), split.y_test).item()
    assert mse == pytest.approx(row.final_test_mse, rel=1e-6)


def test_reports_are_written(repo):
    assert (repo / "reports" / "report.md").read_text().count("alpha") >= 1
    assert (repo / "reports" / "metrics.json").exists()
    assert (repo / "reports" / "summary.csv").exists()


def test_second_repro_does_nothing_and_editing_one_sweep_retrains_only_it(repo):
    before = {s: digest(repo / "runs" / s) for s in ("alpha", "beta")}
    out = sh(["dvc", "repro"], repo).stdout
    assert "Running stage" not in out
    assert {s: digest(repo / "runs" / s) for s in ("alpha", "beta")} == before

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    alpha_ids = set(pd.read_csv(repo / "runs" / "alpha" / "runs.csv")["mlflow_run_id"])
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(
        params.replace("zscore, seed: [24, 25]", "zscore, seed: [24, 26]")
    )
    out = sh(["dvc", "repro"], repo).stdout
    assert "Running stage 'train@beta'" in out
    assert "Running stage 'train@alpha'" not in out
    assert digest(repo / "runs" / "alpha") == before["alpha"]
    beta = pd.read_csv(repo / "runs" / "beta" / "runs.csv")
    assert sorted(set(beta["seed"])) == [24, 26]
    for run_id in alpha_ids:  # alpha's MLflow runs are untouched
        assert client.get_run(run_id).info.status == "FINISHED"
