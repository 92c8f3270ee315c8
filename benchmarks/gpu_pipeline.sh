#!/usr/bin/env bash
# On a lent GPU machine (python3 with a CUDA build of torch; no mlflow, no dvc): the default
# pipeline end to end (`dvc repro` from scratch), then a 10^5-run sweep trained and tracked
# into a local MLflow server, each timed. Run from the repository root:
#   WHEELS=/path/to/wheels bash benchmarks/gpu_pipeline.sh | tee benchmarks/results/gpu-pipeline-<card>.txt
# WHEELS holds the packages of requirements.lock the card's image lacks (mlflow, dvc and
# theirs; not torch, numpy or pandas: the card's own are used), as wheels for its Python,
# fetched beforehand where a registry is reachable (the device tool's README says how);
# they install with --target, over the image's packages.
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

echo "== set-up: the packages the card lacks, from \$WHEELS, over its own torch and numpy"
rm -rf "$WORK" && mkdir -p "$WORK/bin"
t0=$SECONDS
python3 -m pip install -q --no-index --no-deps --no-compile --no-build-isolation \
  --target "$WORK/site" "$WHEELS"/*
ln -sf "$(command -v python3)" "$WORK/bin/python"  # the stages' commands say `python`
export PATH="$WORK/bin:$WORK/site/bin:$PATH" PYTHONPATH="$WORK/site"
echo "set-up: $((SECONDS - t0)) s"

# A workspace: the tree as a fresh clone has it (no runs, no store, no lock).
workspace() {
  mkdir -p "$1"
  (cd "$ROOT" && tar -c --exclude=./.whl --exclude=./.venv --exclude=./runs --exclude=./data \
    --exclude=./mlflow.db --exclude=./mlartifacts --exclude=./.dvc/cache --exclude=./.dvc/tmp .) |
    tar -x -C "$1"
  (cd "$1" && rm -f dvc.lock && if command -v git > /dev/null; then
    git init -q && git add -A && git -c user.name=gpu -c user.email=gpu@local commit -qm tree
  else dvc config core.no_scm true; fi)
}

echo "== the default pipeline: dvc repro from scratch (device auto: cuda)"
workspace "$WORK/default"
cd "$WORK/default"
export PYTHONPATH="$WORK/site:$WORK/default"
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
export PYTHONPATH="$WORK/site:$WORK/big"
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
if command -v git > /dev/null; then git -c user.name=gpu -c user.email=gpu@local commit -qam big; fi
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
