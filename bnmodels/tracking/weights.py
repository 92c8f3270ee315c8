"""A trained run's model as a weights-only file: loading it runs no code from the file.

The file is one `torch.save` of plain data: the run's configuration, its input width, and
its `state_dict` (tensors). `torch.load(weights_only=True)` reads it with PyTorch's
restricted unpickler, which builds tensors and containers only, so a file planted in a
shared store cannot run code on the machine that loads it (a pickled `nn.Module`, what
`mlflow.pytorch` logs, can). The network is rebuilt from the project's own `MLP` class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bnmodels.experiment.config import RunConfig
from bnmodels.training.model import MLP, build_model

FORMAT = "bnmodels-weights/1"


def weights_record(config: RunConfig, in_features: int, state_dict: dict[str, Any]) -> dict:
    """What the file holds. The weights may be views into a batched engine's stacked
    tensors, on any device: each is copied into its own small CPU tensor."""
    out_rows = int(torch.as_tensor(state_dict["out.weight"]).shape[0])
    return {
        "format": FORMAT,
        "config": config.as_dict(),
        "in_features": int(in_features),
        "num_class": out_rows if out_rows > 1 else 0,  # one logit per class, or regression
        "state_dict": {k: torch.as_tensor(v).detach().cpu().clone() for k, v in state_dict.items()},
    }


def save_weights(path: str | Path, config: RunConfig, in_features: int, state_dict) -> None:
    torch.save(weights_record(config, in_features, state_dict), path)


def load_weights(path: str | Path) -> MLP:
    """The network of a weights file, in eval mode, in the dtype it was trained in."""
    record = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file")
    state = record["state_dict"]
    dtype = next(v.dtype for v in state.values() if v.is_floating_point())
    config = RunConfig(**record["config"])
    model = build_model(config, record["in_features"], record.get("num_class", 0)).to(dtype)
    model.load_state_dict(state)
    return model.eval()
