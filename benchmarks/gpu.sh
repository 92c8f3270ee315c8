#!/usr/bin/env bash
# The GPU checks, as run by hand on a lent H100/H200 (CI has no GPU):
#   PYTHONPATH=. bash benchmarks/gpu.sh > benchmarks/results/gpu-<card>.txt
# The card's python3 holds a CUDA build of torch; bnmodels' engine needs only torch,
# numpy, pyyaml and click, which it has.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-.}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
echo "== CUDA tests (engine equivalence and independence on the GPU)"
python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_engine.py -k cuda 2>&1 | tail -5
for n in 10000 100000; do
  for g in --graphs --no-graphs; do
    echo "== $n runs $g"
    python3 benchmarks/engines.py --device cuda --runs $n --epochs 5 --reference-runs 20 $g
  done
done
for g in --graphs --no-graphs; do
  for n in 100000; do
    echo "== $n runs x 40 epochs $g"
    python3 benchmarks/engines.py --device cuda --runs $n --epochs 40 --reference-runs 10 $g
  done
done
