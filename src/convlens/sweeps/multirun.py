"""What a job needs to know when it is one of many (``-m``, a search, a launcher)."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from pytorch_lightning import Trainer

from convlens.errors import ConvlensError
from convlens.lightning_internals import relaunches_the_script
from convlens.startup.run_log import print_error

ERROR_FILE = "error.txt"  # a failed job's one-line reason, in its own dir; the sweep report shows it
SEARCH_SWEEPER = "hydra_plugins.convlens_optuna_sweeper.optuna_sweeper.ConvlensOptunaSweeper"  # an Optuna search


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def fail_this_job(error: ConvlensError, raised: BaseException) -> None:
    """A multirun job's ConvlensError (from ``startup.run_task.report_errors``) fails only this job.

    Exiting would end the whole sweep; instead the job prints its overrides and the reason, writes them to
    ``error.txt`` in its dir (an Optuna trial is then recorded as failed), and the sweep goes on.
    """
    hydra = HydraConfig.get()
    overrides = " ".join(hydra.overrides.task) or "no overrides"
    Path(hydra.runtime.output_dir, ERROR_FILE).write_text(f"{error}\n")
    print_error(f"job {hydra.job.num} ({overrides}): {error}", raised)


def check_strategy_for_multirun(trainer: Trainer) -> None:
    """Refuse a strategy that re-runs this script per device: under ``-m`` every rank would start its own sweep.

    Lightning's subprocess-script launcher is exactly that re-run (``ddp`` and its variants off a cluster);
    ``ddp_spawn`` forks workers inside the job instead, and on SLURM the tasks are started by SLURM (no launcher).
    """
    if in_multirun() and relaunches_the_script(trainer):
        raise ConvlensError(
            f"strategy ddp ({type(trainer.strategy).__name__}) re-launches this script once per device, so under -m "
            "every rank would run its own sweep; set trainer.strategy=ddp_spawn for multi-device sweeps"
        )
