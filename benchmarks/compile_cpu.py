"""Does torch.compile pay on the CPU? One group's SGD step, eager against compiled.

    python benchmarks/compile_cpu.py

Prints the compile time (first call) and the per-step time of each, and how many steps
the compiled step needs to repay its compile time. Not used by the pipeline.
"""

import time

import torch

from benchmarks.engines import mixed_sweep
from bnmodels.experiment.config import DatasetSpec
from bnmodels.experiment.data import generate
from bnmodels.training.group import Group, Init

torch.set_num_threads(1)
spec = DatasetSpec("quad2", 1000, (2.0, -1.0), False, 0.01, 2, 420, 0.7, (1.0, 1.0), (0.0, 0.0))
split = generate(spec)
runs = mixed_sweep(96, 1, 3, 10)  # one group: 96 mixed runs, depth 3, batch 10


def timed_steps(step, g, n=300):
    xb, yb = g.x_train[g.data_idx][:, :10], g.y_train[g.data_idx][:, :10]
    t = time.perf_counter()
    step(xb, yb)
    first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(n):
        step(xb, yb)
    return first, (time.perf_counter() - t) / n


g = Group(runs, [split] * len(runs), torch.device("cpu"), torch.float32, Init())
_, eager = timed_steps(g.sgd_step, g)
g2 = Group(runs, [split] * len(runs), torch.device("cpu"), torch.float32, Init())
first, compiled = timed_steps(torch.compile(g2.sgd_step), g2)
print(f"eager step:    {eager * 1e6:8.0f} us")
print(f"compiled step: {compiled * 1e6:8.0f} us  (first call, compiling: {first:.1f} s)")
if compiled < eager:
    print(
        f"compile repays itself after {first / (eager - compiled):,.0f} steps "
        f"(the default pipeline trains ~45,000 group-steps over ~20 groups)"
    )
else:
    print("the compiled step is not faster: compile never pays")
