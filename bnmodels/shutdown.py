"""A stage's exit without the interpreter's last garbage collections; where a stuck stage is.

A process that imported torch and MLflow spends about a second exiting: Python's
finalization runs full collections over every object those 2,700 modules made
(measured on the 2-core machine: `python -c "import torch, mlflow"` 4.5 s wall against
3.2 s inside; torch alone 0.5 s of exit). Freezing the heap from an atexit handler
(`gc.freeze`; the finalization's collections come after every atexit handler) leaves
those objects out of them; files, connections and the other atexit handlers run as
before. Measured per stage: ~0.5 s for a data stage, 1-1.5 s for a train stage, so
10-15 s of a `dvc repro` of the 19 default stages.

`kill -USR1 <pid>` makes a stage print every thread's Python stack to stderr
(`faulthandler`), and it goes on: what a stage that seems stuck is doing.
"""

from __future__ import annotations

import atexit
import faulthandler
import gc
import signal


def fast_exit() -> None:
    """Skip the final garbage collections at this process's exit (module doc), and let
    `kill -USR1` print the stage's stacks. Call it in a stage script before `main()`."""
    atexit.register(gc.freeze)
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
