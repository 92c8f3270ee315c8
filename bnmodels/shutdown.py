"""A stage's exit without the interpreter's last garbage collections; where a stuck stage is.

A process that imported torch and MLflow spends about a second exiting: Python's
finalization runs full collections over every object those 2,700 modules made
(measured on the 2-core machine: `python -c "import torch, mlflow"` 4.5 s wall against
3.2 s inside; torch alone 0.5 s of exit). Freezing the heap at exit (`gc.freeze`, from
an atexit handler, so after every other handler has run) leaves those objects out of the
collections; files, connections and atexit handlers are closed as before. The default
pipeline starts 19 stage processes, so this is about 10 s of `dvc repro`.

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
