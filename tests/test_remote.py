"""The default DVC remote: `dvc push --run-cache` from one clone, `dvc pull --run-cache` in
another, and the second has data, runs and plans without retraining anything."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # dvc repro, servers, clusters: not in make test-fast

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
claims: {}
file_datasets: {}
"""


def sh(cmd, cwd) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert p.returncode == 0, f"{cmd} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout + p.stderr


def test_push_and_pull_with_the_run_cache_give_a_clone_the_results_without_retraining(
    tmp_path,
):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("bnmodels", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    (repo / "params.yaml").write_text(PARAMS)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    sh(["git", "init", "-q"], repo)
    sh(["dvc", "init", "-q"], repo)
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")  # the project's remote
    sh(["dvc", "repro", "train@alpha"], repo)
    sh(["git", "add", "-A"], repo)
    sh([*git, "commit", "-q", "-m", "results"], repo)
    sh(["dvc", "push", "--run-cache"], repo)
    assert (tmp_path / "bnmodels-remote" / "files").is_dir()  # beside the repository

    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    sh(["dvc", "pull", "--run-cache"], clone)
    for f in ("runs.csv", "history.csv", "diagnostics.json"):
        assert (clone / "runs" / "alpha" / f).read_bytes() == (
            repo / "runs" / "alpha" / f
        ).read_bytes()
    out = sh(["dvc", "repro", "train@alpha"], clone)  # plans are rebuilt, nothing retrains
    assert "Running stage 'train@alpha'" not in out, out
    assert not (clone / "mlflow.db").exists()
