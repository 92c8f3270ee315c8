#!/usr/bin/env bash
# On a lent GPU machine (python3 with a CUDA build of torch; no mlflow, no dvc): the default
# pipeline end to end (`dvc repro` from scratch), then a 10^5-run sweep trained and tracked
# into a local MLflow server, each timed. Run from the repository root:
#   WHEELS=/path/to/wheels bash benchmarks/gpu_pipeline.sh | tee benchmarks/results/gpu-pipeline-<card>.txt
# WHEELS holds every package of requirements.lock (not torch: the card's own is used), as
# wheels for that machine's python and platform, fetched beforehand where a registry is
# reachable, e.g. for CPython 3.11 on x86_64 Linux:
#   pip download --no-deps --only-binary=:all: --python-version 3.11 \
#     --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
#     -r requirements.lock -d wheels
# WORK (default /tmp/bnmodels-gpu) is scratch. STORE=sqlite (default: the project's bulk
# SQL path into a local file, one writer) or STORE=server (a local `mlflow server` on PORT,
# default 5055, logged by up to 8 processes over HTTP). RUNS (default 100000): logging,
# not training, bounds the big sweep (~60-100 runs/s into SQLite on a fast core: 10^5 runs
# take ~20 min; RUNS=20000 fits a 15-minute device budget with the default pipeline).
set -euo pipefail
ROOT=$(pwd)
WORK=${WORK:-/tmp/bnmodels-gpu}
WHEELS=${WHEELS:-$ROOT/wheels}
PORT=${PORT:-5055}
RUNS=${RUNS:-100000}
STORE=${STORE:-sqlite}
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "$(nproc) cores; $(python3 --version); load: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

echo "== set-up: a venv over the system's torch, the locked packages from \$WHEELS"
rm -rf "$WORK" && mkdir -p "$WORK"
python3 -m venv --system-site-packages "$WORK/venv"
t0=$SECONDS
"$WORK/venv/bin/pip" install -q --no-index --find-links "$WHEELS" --no-deps \
  --require-hashes -r requirements.lock
echo "set-up: $((SECONDS - t0)) s"
export PATH="$WORK/venv/bin:$PATH"

# A workspace: the committed tree, as a fresh clone would have it (no runs, no store).
workspace() {
  mkdir -p "$1" && git -C "$ROOT" archive HEAD | tar -x -C "$1"
  (cd "$1" && git init -q && git add -A && git -c user.name=gpu -c user.email=gpu@local \
    commit -qm tree && rm -f dvc.lock && dvc config core.analytics false 2>/dev/null || true)
}

echo "== the default pipeline: dvc repro from scratch (device auto: cuda)"
workspace "$WORK/default"
cd "$WORK/default"
export PYTHONPATH="$WORK/default"
t0=$SECONDS
dvc repro -q
echo "default dvc repro: $((SECONDS - t0)) s"
python3 - <<'EOF'
import sqlite3
con = sqlite3.connect("mlflow.db")
print("MLflow runs by status:", con.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
EOF

echo "== $RUNS runs in one sweep, tracked into a local MLflow $STORE"
mkdir -p "$WORK/server"
if [ "$STORE" = server ]; then
mlflow server --backend-store-uri "sqlite:///$WORK/server/mlflow.db" \
  --artifacts-destination "$WORK/server/artifacts" --host 127.0.0.1 --port "$PORT" \
  --workers 8 > "$WORK/server/log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break
  sleep 1
done
export MLFLOW_TRACKING_URI="http://127.0.0.1:$PORT"
else
export MLFLOW_TRACKING_URI="sqlite:///$WORK/server/mlflow.db"
fi
workspace "$WORK/big"
cd "$WORK/big"
export PYTHONPATH="$WORK/big"
python3 - "$RUNS" <<'EOF'
import sys
import yaml

runs = int(sys.argv[1])
params = yaml.safe_load(open("params.yaml"))
shape = {"bn": ["none", "pre", "post"], "lr": [0.01, 0.03, 0.1, 0.3, 1.0]}
per_seed = 15
params["sweeps"] = {"big": {**shape, "epochs": 40, "seed": list(range(-(-runs // per_seed)))}}
params["claims"] = {}
yaml.safe_dump(params, open("params.yaml", "w"), sort_keys=False)
EOF
git -c user.name=gpu -c user.email=gpu@local commit -qam big
t0=$SECONDS
dvc repro -q train@big
echo "train@big ($RUNS+ runs, trained and logged into the $STORE): $((SECONDS - t0)) s"
python3 - <<'EOF'
import pandas as pd
from mlflow import MlflowClient

runs = pd.read_csv("runs/big/runs.csv")
client = MlflowClient()
exp = client.get_experiment_by_name("bnmodels/big")
n, token = 0, None
while True:
    page = client.search_runs([exp.experiment_id], max_results=50000, page_token=token)
    n += len(page)
    if not (token := page.token):
        break
print(f"runs.csv: {len(runs)} rows, {runs['mlflow_run_id'].nunique()} distinct run ids;"
      f" MLflow: {n} runs (children and parent)")
EOF
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
