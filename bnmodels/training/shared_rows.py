"""A group's data held once, for data sets too large for a copy per run.

The batched engine normally gives every run its own copy of its split's rows, (R, n, F),
and gathers them once per epoch in the run's order. With 10^6 rows of 50 features and
100 runs that is 20 GB. `SharedRows` keeps each distinct split once, (D, n, F), and a run
reads its rows through its split's index: a batch is one gather of (R, B, F) (the same
values, so the steps are the same bit for bit), and an evaluation walks the rows in
chunks of (R, c, F), summing what the full evaluation averages.
"""

from __future__ import annotations

import torch

# Above this many elements (runs x train rows x features) a group's rows are shared.
SHARED_ELEMENTS = 1 << 26
CHUNK_ELEMENTS = 1 << 23  # runs x rows x max(features, width) of one evaluation chunk


class SharedRows:
    """x (D, n, F) and y (D, n, 1) or (D, n) labels, each split once; data_idx (R,)
    names each run's split."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, data_idx: torch.Tensor):
        self.x, self.y, self.data_idx = x, y, data_idx
        self.n = x.shape[1]

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each run's rows idx (R, B) of its own split: (R, B, F) and its labels."""
        d = self.data_idx.unsqueeze(1)  # (R, 1)
        return self.x[d, idx], self.y[d, idx]

    def chunks(self, width: int):
        """(x (R, c, F), y) for consecutive chunks of c rows, every run its own split's."""
        R = len(self.data_idx)
        c = max(1, CHUNK_ELEMENTS // (R * max(self.x.shape[2], width)))
        for s in range(0, self.n, c):
            yield self.x[:, s : s + c][self.data_idx], self.y[:, s : s + c][self.data_idx]


@torch.no_grad()
def evaluate_shared(group, rows: SharedRows) -> tuple[dict, torch.Tensor]:
    """`Group.evaluate` over every row, chunk by chunk: {"mse": (R,)} or {"ce", "accuracy"},
    and which hidden units are dead (<= 0) on every row, (R, depth * w) bool."""
    sums: dict[str, torch.Tensor] = {}
    dead = None
    for xc, yc in rows.chunks(group.width):
        out, acts, _ = group.forward(xc)
        if not group.num_class:
            d = out - yc
            part = {"mse": (d * d).sum(dim=(1, 2))}
        else:
            ce = torch.logsumexp(out, dim=2) - out.gather(2, yc.unsqueeze(2)).squeeze(2)
            hits = (out.argmax(dim=2) == yc).to(torch.float64)
            part = {"ce": ce.sum(dim=1), "accuracy": hits.sum(dim=1)}
        for k, v in part.items():
            sums[k] = sums[k] + v if k in sums else v
        chunk_dead = torch.cat([(a <= 0).all(dim=1) for a in acts], dim=1)
        dead = chunk_dead if dead is None else dead & chunk_dead
    return {k: v / rows.n for k, v in sums.items()}, dead
