"""Test helper: run one script as its own process, started from a server that has already imported torch.

A documented command runs exactly as ``python <script> <args>`` would: in a process of its own, with its own
argv, working directory and environment, and exits with its own status. The process is forked by a
multiprocessing fork server that imported the heavy libraries once, so each command pays for its own work and
not for importing torch and Lightning again.
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import sys
from pathlib import Path
from unittest.mock import patch

PRELOAD = [
    "torch",
    "torchvision",
    "pytorch_lightning",
    "torchmetrics",
    "hydra",
    "omegaconf",
    "matplotlib.pyplot",
    "convlens.tasks.train",
]


def run_script(script: str, args: list[str], cwd: str, env: dict[str, str], log: str) -> None:
    """The child: become ``python script *args`` in ``cwd``, with stdout and stderr going to ``log``."""
    with open(log, "w") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [script, *args]
    sys.path.insert(0, str(Path(script).parent))
    runpy.run_path(script, run_name="__main__")


def run(script: str, args: list[str], cwd: Path, env: dict[str, str], log: Path, timeout: float) -> int | None:
    """Run ``script`` as its own process; its exit status, or None if it ran past ``timeout`` seconds."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    process = context.Process(target=run_script, args=(script, args, str(cwd), env, str(log)))
    # The server imports PRELOAD from this process's sys.path (this checkout's code), which it does not inherit.
    with patch.dict(os.environ, {"PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}):
        process.start()
    process.join(timeout)
    if process.exitcode is None:
        process.kill()
        process.join()
        return None
    return process.exitcode
