"""Hydra callbacks for multiruns: the sweep dir is claimed before any job, and ends with a report of every job."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich.markup import escape

from convlens.errors import ConvlensError
from convlens.startup.run_log import print_and_log, print_error
from convlens.startup.run_task import task_begins
from convlens.sweeps import interrupted
from convlens.sweeps.multirun import SEARCH_SWEEPER
from convlens.sweeps.sweep_dir_claim import claim_sweep_dir

BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


class SweepReport(Callback):
    """Claims the sweep dir first (the Optuna study's sqlite file lives there) and writes the sweep report last.

    A sweep whose jobs failed still writes its report, then exits 1 with one line naming the failed jobs.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.claim: int | None = None  # the lock on the sweep dir, held until this process ends

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper = config.hydra.sweeper
        search = f"search {sweeper.storage} {sweeper.study_name}" if sweeper.get("_target_") == SEARCH_SWEEPER else None
        try:
            self.claim = claim_sweep_dir(Path(config.hydra.sweep.dir), search)
        except ConvlensError as error:  # Hydra turns a callback's exception into a warning and goes on
            print_error(str(error))
            sys.exit(1)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        from convlens.sweeps.report import build_report, print_report, write_report  # matplotlib: only when needed

        report = build_report(
            Path(config.hydra.sweep.dir), config.get("optimized_metric") or "val/acc_best", config=config
        )
        write_report(report)
        print_report(report)
        if not report.failed:
            return
        names = "; ".join(f"job {job.name} ({' '.join(job.overrides) or 'no overrides'})" for job in report.failed)
        if searched_enough(config, report):  # a search asks for another trial in place of each failed one
            print_and_log(
                f"[yellow]{len(report.failed)} failed trials were replaced: {escape(names)}; see "
                f"{escape(str(report.sweep_dir))}/report.md"
            )
            return
        print_error(
            f"{len(report.failed)} of {report.n_jobs} jobs failed or wrote no metrics.json: {names}; "
            f"see {report.sweep_dir}/report.md"
        )
        sys.exit(1)


def searched_enough(config: DictConfig, report: Any) -> bool:
    """A search whose study reached ``n_trials`` complete or pruned trials did what it was asked."""
    from convlens.sweeps.report import COMPLETE, PRUNED

    sweeper = config.hydra.sweeper
    return sweeper.get("_target_") == SEARCH_SWEEPER and len(report.in_state(COMPLETE, PRUNED)) >= sweeper.n_trials


class ReportOnCtrlC(Callback):
    """Remembers the sweep as it starts, so that Ctrl-C still ends it with a report (``sweeps/interrupted.py``).

    Under Hydra's basic launcher the jobs run in this process, so from here on Ctrl-C is a KeyboardInterrupt
    (during training StopOnSignal first saves the job's last.ckpt) rather than startup's immediate exit. Other
    launchers' workers get the signal themselves, and this process keeps ending at once, as before.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        interrupted.remember(config)
        if config.hydra.launcher.get("_target_") == BASIC_LAUNCHER:
            task_begins()
