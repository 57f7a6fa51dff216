"""Where a search's trials run: ``n_jobs`` slots, each taking the next trial as soon as its last one ends.

- The default launcher with ``n_jobs: 1``: in this process, through Hydra's launcher, one trial after another
  (as a plain ``-m`` runs its jobs; Ctrl-C reaches the run itself).
- The default or the joblib launcher with ``n_jobs`` > 1: worker processes of the sweeper's own (loky, joblib's
  process pool), one trial per process at a time, each with cores // ``n_jobs`` threads as joblib gives its
  workers. joblib's launcher itself cannot be used per trial: it runs a whole batch and returns when the
  slowest job ends, and it refuses to start processes from a thread.
- Any other launcher (submitit's local and SLURM ones): one one-job launch per trial, each from a thread of
  its own, so a slot whose job ends is given the next trial while the others still run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
IN_PROCESS_LAUNCHERS = ("BasicLauncher", "JoblibLauncher")


def run_one_job(
    number: int,
    overrides: Sequence[str],
    hydra_context: HydraContext,
    config: DictConfig,
    task_function: TaskFunction,
    singleton_state: dict,
) -> JobReturn:
    """Job ``number`` in a worker process, as Hydra's joblib launcher runs each of its jobs."""
    setup_globals()
    Singleton.set_state(singleton_state)
    job_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(job_config):
        job_config.hydra.job.id = f"{job_config.hydra.job.name}_{number}"
        job_config.hydra.job.num = number
    HydraConfig.instance().set_config(job_config)
    return run_job(
        hydra_context=hydra_context,
        task_function=task_function,
        config=job_config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


class Slots:
    """``submit(number, overrides)``: the trial's job starts now if a slot is free, else when one is."""

    def __init__(
        self,
        launcher: Launcher,
        n_jobs: int,
        hydra_context: HydraContext,
        config: DictConfig,
        task_function: TaskFunction,
    ) -> None:
        self.launcher, self.n_jobs = launcher, n_jobs
        self.job_args = (hydra_context, config, task_function)
        name = type(launcher).__name__
        self.inline = name == "BasicLauncher" and n_jobs == 1
        self.executor: Executor | None = None
        if self.inline:
            return
        if name in IN_PROCESS_LAUNCHERS:
            self.executor = worker_processes(n_jobs)
        else:
            self.executor = ThreadPoolExecutor(max_workers=n_jobs, thread_name_prefix="trial-slot")

    def submit(self, number: int, overrides: Sequence[str]) -> Future:
        if self.inline:
            return done_future(lambda: self.launch(number, overrides))
        if isinstance(self.executor, ThreadPoolExecutor):
            return self.executor.submit(self.launch, number, overrides)
        assert self.executor is not None  # every launcher but the inline one has one
        return self.executor.submit(run_one_job, number, list(overrides), *self.job_args, Singleton.get_state())

    def launch(self, number: int, overrides: Sequence[str]) -> JobReturn:
        return self.launcher.launch([list(overrides)], initial_job_idx=number)[0]

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)


def worker_processes(n_jobs: int) -> Executor:
    from joblib import cpu_count
    from joblib.externals.loky import get_reusable_executor  # cloudpickle: the task function lives in __main__

    threads = str(max(1, cpu_count() // n_jobs))
    env = {name: os.environ.get(name, threads) for name in THREAD_VARIABLES}
    return get_reusable_executor(max_workers=n_jobs, env=env, reuse=False)


def done_future(work) -> Future:
    """Run ``work`` now, in this thread, and hand back its result as a finished Future."""
    future: Future = Future()
    try:
        future.set_result(work())
    except BaseException as raised:
        future.set_exception(raised)
        if not isinstance(raised, Exception):
            raise
    return future
