"""Hydra callbacks for multiruns: the sweep dir exists before any job, and ends with a report of every job."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from convlens.cli.entry import print_error, shell_override, task_begins
from convlens.errors import ConvlensError
from convlens.sweeps import interrupted

BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def refuse_a_used_sweep_dir(sweep_dir: Path, storage: str | None) -> None:
    """A new sweep numbers its jobs from 0 again, so in a sweep dir that has jobs it would overwrite their folders."""
    done = sorted((path.parent.parent.name for path in sweep_dir.glob("*/.hydra/overrides.yaml")),
                  key=lambda name: (len(name), name))
    if not done:
        return
    study = (f"; to continue its Optuna study, pass a new hydra.sweep.dir with "
             f"{shell_override('hydra.sweeper.storage', storage)}") if storage else ""
    raise ConvlensError(f"hydra.sweep.dir={sweep_dir} already holds the jobs of an earlier sweep "
                        f"({', '.join(done[:5])}{', ...' if len(done) > 5 else ''}), whose folders a new sweep would "
                        f"overwrite; pass a new hydra.sweep.dir{study}")


class SweepReport(Callback):
    """Makes the sweep dir first (the Optuna study's sqlite file lives there) and writes the sweep report last.

    A sweep whose jobs failed still writes its report, then exits 1 with one line naming the failed jobs.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            refuse_a_used_sweep_dir(sweep_dir, config.hydra.sweeper.get("storage"))
        except ConvlensError as error:  # Hydra turns a callback's exception into a warning and goes on
            print_error(str(error))
            sys.exit(1)
        sweep_dir.mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        from convlens.sweeps.report import build_report, print_report, write_report  # matplotlib: only when needed

        report = build_report(Path(config.hydra.sweep.dir), config.get("optimized_metric") or "val/acc_best",
                              config=config)
        write_report(report)
        print_report(report)
        if report.failed:
            names = "; ".join(f"job {job.name} ({' '.join(job.overrides) or 'no overrides'})" for job in report.failed)
            print_error(f"{len(report.failed)} of {report.n_jobs} jobs failed or wrote no metrics.json: {names}; "
                        f"see {report.sweep_dir}/report.md")
            sys.exit(1)


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
