"""Where the processed data of one (data set, normalization) pair lives.

The normalize stage writes these files and the plan and train stages read them; the
root folder itself comes from dvc.yaml, on each stage's command line.
"""

from __future__ import annotations

from pathlib import Path


def data_file(processed: str | Path, dataset: str, normalization: str) -> Path:
    """Where the normalize stage stores one (data set, normalization) pair."""
    return Path(processed) / dataset / f"{normalization}.pt"


def error_file(processed: str | Path, dataset: str, normalization: str) -> Path:
    """Where the normalize stage explains why a normalization is impossible."""
    return Path(processed) / dataset / f"{normalization}.error"
