"""What a job needs to know when it is one of many (``-m``, a search, a launcher)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from pytorch_lightning import Trainer

from convlens.cli.entry import convlens_error_in, print_error, report_errors, restore_user_full_error
from convlens.cli.run_log import join_run_log, log_failure
from convlens.errors import ConvlensError
from convlens.lightning_internals import relaunches_the_script

T = TypeVar("T")
ERROR_FILE = "error.txt"  # a failed job's one-line reason, in its own dir; the sweep report shows it
SEARCH_SWEEPER = "hydra_plugins.convlens_optuna_sweeper.optuna_sweeper.ConvlensOptunaSweeper"  # an Optuna search


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_job(task: Callable[[], T]) -> T | None:
    """``report_errors``, except that in a multirun a ConvlensError fails only this job.

    Exiting would end the whole sweep; instead the job prints its overrides and the reason, writes them to
    ``error.txt`` in its dir and returns None (an Optuna trial is then recorded as failed), and the sweep goes on.
    """
    if not in_multirun():
        return report_errors(task)
    restore_user_full_error()  # run_hydra set HYDRA_FULL_ERROR=1 only for composing the config
    join_run_log()
    try:
        return task()
    except Exception as raised:
        error = convlens_error_in(raised)  # Hydra's instantiate wraps errors raised while building
        if error is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            log_failure(f"error: {error or raised}", raised)
            raise
        hydra = HydraConfig.get()
        overrides = " ".join(hydra.overrides.task) or "no overrides"
        Path(hydra.runtime.output_dir, ERROR_FILE).write_text(f"{error}\n")
        print_error(f"job {hydra.job.num} ({overrides}): {error}", raised)
        return None


def check_strategy_for_multirun(trainer: Trainer) -> None:
    """Refuse a strategy that re-runs this script per device: under ``-m`` every rank would start its own sweep.

    Lightning's subprocess-script launcher is exactly that re-run (``ddp`` and its variants off a cluster);
    ``ddp_spawn`` forks workers inside the job instead, and on SLURM the tasks are started by SLURM (no launcher).
    """
    if in_multirun() and relaunches_the_script(trainer):
        raise ConvlensError(
            f"strategy ddp ({type(trainer.strategy).__name__}) re-launches this script once per device, so under -m "
            "every rank would run its own sweep; set trainer.strategy=ddp_spawn for multi-device sweeps")
