"""Where the processed data of one (data set, normalization, draw) split lives.

The normalize stage writes these files and the plan and train stages read them; the
root folder itself comes from dvc.yaml, on each stage's command line.
"""

from __future__ import annotations

from pathlib import Path


def _name(normalization: str, draw: int) -> str:
    # Draw 0 keeps the name it had before data sets had draws.
    return normalization if draw == 0 else f"{normalization}.draw{draw}"


def data_file(processed: str | Path, dataset: str, normalization: str, draw: int = 0) -> Path:
    """Where the normalize stage stores one (data set, normalization, draw) split."""
    return Path(processed) / dataset / f"{_name(normalization, draw)}.pt"


def error_file(processed: str | Path, dataset: str, normalization: str, draw: int = 0) -> Path:
    """Where the normalize stage explains why a normalization is impossible."""
    return Path(processed) / dataset / f"{_name(normalization, draw)}.error"


def data_name(dataset: str, normalization: str, draw: int) -> str:
    """A split's key in a plan's data_md5: `dataset/normalization`, and `/draw<d>` after
    it for a draw d > 0 (so that plans of single-draw data sets are as they were)."""
    return f"{dataset}/{normalization}" + (f"/draw{draw}" if draw else "")


def columns_file(processed: str | Path, dataset: str) -> Path:
    """Where the read stage records a file data set's columns and class order."""
    return Path(processed) / dataset / "columns.json"
