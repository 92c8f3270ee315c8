"""numpy's OpenBLAS runs one thread once bnmodels is imported (bnmodels/__init__.py), whether
numpy came first or not; a user's own OPENBLAS_NUM_THREADS is kept."""

import os
import subprocess
import sys

import pytest

SHOW = (
    "from threadpoolctl import threadpool_info; "
    "print(sorted({i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}))"
)


def blas_threads(code: str, **env) -> str:
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", f"{code}; {SHOW}"],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: OpenBLAS uses one thread anyway")
def test_openblas_runs_one_thread_after_bnmodels_whatever_came_first():
    assert blas_threads("import numpy") != "[1]"  # the default this guards against
    assert blas_threads("import bnmodels, numpy") == "[1]"
    assert blas_threads("import numpy, bnmodels") == "[1]"  # threadpoolctl's path
    assert blas_threads("import numpy, bnmodels", OPENBLAS_NUM_THREADS="2") == "[2]"
