"""Ctrl-C during a sweep: the report of what finished, and one line saying how to run the rest.

Hydra's multirun has no hook for an interrupted sweep: the KeyboardInterrupt (or StopOnSignal's exit with
128 + the signal, raised after it saved the running job's ``last.ckpt``) leaves the sweeper's loop and Hydra
without ``on_multirun_end``. So the sweep's config is remembered when it starts (``ReportOnCtrlC``), and the
entry point's ``run_hydra`` calls ``report_interrupted_sweep`` as the interrupt passes on its way out.
"""

from __future__ import annotations

import math
import shlex
import signal
from pathlib import Path

from omegaconf import DictConfig
from rich.markup import escape

from convlens.errors import ConvlensError
from convlens.startup.run_log import error_console, print_error
from convlens.sweeps.sweep_study import is_grid

INTERRUPT_CODES = (128 + signal.SIGINT, 128 + signal.SIGTERM)  # StopOnSignal's exit codes
running: DictConfig | None = None  # the sweep this process runs, from its start


def remember(config: DictConfig) -> None:
    global running
    running = config


def is_interrupt(stop: BaseException) -> bool:
    return isinstance(stop, KeyboardInterrupt) or (isinstance(stop, SystemExit) and stop.code in INTERRUPT_CODES)


def report_interrupted_sweep() -> bool:
    """Write and print the report of the sweep this process was running, with its one line saying how to run
    the rest; False if no sweep was running."""
    if running is None or not Path(running.hydra.sweep.dir).is_dir():
        return False
    from convlens.sweeps.report import INTERRUPTED, NEVER_STARTED, build_report, print_report, write_report

    try:
        report = build_report(
            Path(running.hydra.sweep.dir),
            running.get("optimized_metric") or "val/acc_best",
            interrupted=True,
            config=running,
        )
    except ConvlensError as error:  # e.g. its study cannot be read: the interrupt still ends the sweep as it is
        print_error(f"interrupted, with no report: {error}")
        return False
    write_report(report)
    print_report(report)
    rest = [job.overrides for job in report.in_state(INTERRUPTED, NEVER_STARTED)]
    if is_grid(running):
        commands = [command(running, grid) for grid in as_grids(rest)] if rest else []
    else:  # a search: the same command in the same folder continues its study
        commands = [command(running, task_overrides(running), keep_sweep_dir=True)]
    how = f"run the rest with: {' && '.join(commands)}" if commands else "every job had finished"
    error_console.print(
        f"[yellow]interrupted:[/yellow] {escape(report.counts())}; {escape(how)}", soft_wrap=True, highlight=False
    )
    return True


def task_overrides(cfg: DictConfig) -> list[str]:
    return [str(item) for item in cfg.hydra.overrides.task]


def command(cfg: DictConfig, overrides: list[str], keep_sweep_dir: bool = False) -> str:
    """The multirun command with ``overrides``, the Hydra overrides it was started with (launcher, ...), and
    either this sweep dir or a new one (Hydra's default)."""
    hydra = [
        str(item) for item in cfg.hydra.overrides.hydra if not str(item).startswith(("hydra.sweep.dir=", "hydra.mode="))
    ]
    where = [f"hydra.sweep.dir={cfg.hydra.sweep.dir}"] if keep_sweep_dir else []
    return shlex.join(["python", f"src/{cfg.hydra.job.name}.py", "-m", *overrides, *hydra, *where])


def as_grids(jobs: list[list[str]]) -> list[list[str]]:
    """Jobs (each its key=value items, keys in one order) as few Hydra sweeps whose grids hold exactly these jobs:
    one sweep if they form a grid, else one per value of the first key, and so on down."""
    columns = [list(dict.fromkeys(items)) for items in zip(*jobs, strict=False)]
    if math.prod(len(column) for column in columns) == len(jobs):
        return [[joined(column) for column in columns]]
    groups: dict[str, list[list[str]]] = {}
    for job in jobs:
        groups.setdefault(job[0], []).append(job[1:])
    return [[first, *grid] for first, rest in groups.items() for grid in as_grids(rest)]


def joined(items: list[str]) -> str:
    """``lr=0.1`` and ``lr=0.2`` as Hydra's sweep ``lr=0.1,0.2``."""
    key = items[0].partition("=")[0]
    return f"{key}={','.join(item.partition('=')[2] for item in items)}"
