"""numpy's OpenBLAS runs one thread in a process that starts a worker pool and in its
workers (`pools.one_blas_thread`); a user's own OPENBLAS_NUM_THREADS is kept."""

import os
import subprocess
import sys

import pytest

CODE = """
from threadpoolctl import threadpool_info
import numpy
from bnmodels.pools import finishing, fork_pool

def blas():
    return sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})

if __name__ == "__main__":
    before = blas()
    with finishing(fork_pool(1)) as pool:
        worker = pool.submit(blas).result()
    print(before, blas(), worker)
"""


def run(**env) -> str:
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", CODE], env={**base, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: OpenBLAS has one thread anyway")
def test_a_pool_runs_numpys_blas_at_one_thread_in_the_caller_and_its_workers():
    before, *_ = run().split("] ")
    assert before != "[1"  # OpenBLAS's default, which this guards against
    assert run().endswith("[1] [1]")
    assert run(OPENBLAS_NUM_THREADS="2") == "[2] [2] [2]"  # the user's setting stands
