"""Per-job CPU threads, set again for every job of a sweep so no job inherits another's setting.

Lightning's DDP sets ``OMP_NUM_THREADS`` and torch's thread count in the process that starts it; in a
multirun every later job in that process would silently keep them. A joblib worker starts with
``OMP_NUM_THREADS`` = cores // n_jobs, which is what ``threads: null`` keeps.
"""

from __future__ import annotations

import os

import torch

START_THREADS = torch.get_num_threads()  # what this process chose before any job ran
START_OMP_NUM_THREADS = os.environ.get("OMP_NUM_THREADS")


def set_threads(threads: int | None) -> int:
    """``threads`` for torch and OpenMP, or (None) the process's starting values; returns the count in force."""
    if threads:
        torch.set_num_threads(int(threads))
        os.environ["OMP_NUM_THREADS"] = str(int(threads))
    else:
        torch.set_num_threads(START_THREADS)
        if START_OMP_NUM_THREADS is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = START_OMP_NUM_THREADS
    return torch.get_num_threads()
