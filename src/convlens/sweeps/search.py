"""An Optuna search as a Hydra sweep, by ask and tell: ask a trial, run it as job <trial number>, tell its end.

The study holds everything that counts, so the same command continues it (only the trials still missing to
reach ``n_trials`` complete or pruned are run) and several sweepers on one study share the work (each trial
number is asked once, whichever sweeper asks it). Trial N's job runs in ``<sweep dir>/N``, a folder no other
trial of the study can have.
"""

from __future__ import annotations

import math
import os
import sys
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from convlens.errors import ConvlensError
from convlens.startup.run_log import console, print_error
from convlens.sweeps.search_space import SearchSpace, grid_choices, search_space
from convlens.sweeps.slots import Slots
from convlens.sweeps.study_storage import open_study
from convlens.sweeps.trial_states import Heartbeat, counts, fail_stale_trials, tell_outcome

GRID = "optuna.samplers.GridSampler"


@dataclass
class SearchSettings:
    """``hydra.sweeper`` (conf/hydra/sweeper/optuna.yaml says what each one means)."""

    direction: str
    study_name: str
    storage: str
    n_trials: int
    n_jobs: int
    max_failure_rate: float
    sampler: DictConfig
    pruner: DictConfig
    params: DictConfig | None
    heartbeat_seconds: float
    stale_after_seconds: float
    wait_for_batch: bool = False

    def __post_init__(self) -> None:
        if self.n_jobs < 1:  # joblib's reading: -1 = one per core, -2 = all but one, ...
            self.n_jobs = max(1, (os.cpu_count() or 1) + 1 + self.n_jobs)


def build_object(kind: str, config: DictConfig, **extra: Any) -> Any:
    """A sampler or pruner from its config; a wrong argument is one line naming the config."""
    try:
        return instantiate(config, **extra)
    except Exception as error:  # Hydra wraps whatever the constructor raised
        why = str(error.__cause__ or error).splitlines()[0]
        raise ConvlensError(
            f"hydra.sweeper.{kind} cannot be made from {OmegaConf.to_container(config)} ({why}); "
            f"fix its settings or choose another hydra/sweeper/{kind}"
        ) from error


def sampler_for(settings: SearchSettings, space: SearchSpace) -> tuple[optuna.samplers.BaseSampler, int]:
    """The sampler, and the trials to run: a grid has no more trials than points."""
    if settings.sampler.get("_target_") != GRID:
        return build_object("sampler", settings.sampler), settings.n_trials
    grid = grid_choices(space)
    return (
        build_object("sampler", settings.sampler, search_space=grid),
        min(settings.n_trials, math.prod(len(values) for values in grid.values())),
    )


def ask(study: optuna.Study, space: SearchSpace, sweep_dir: Path) -> tuple[optuna.Trial, list[str]]:
    trial = study.ask(fixed_distributions=space.distributions)
    if (sweep_dir / str(trial.number) / ".hydra").exists():  # the claim on the sweep dir should prevent it
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise ConvlensError(
            f"{sweep_dir}/{trial.number} already holds a job, which trial {trial.number} of "
            f"{study.study_name} would overwrite; pass a new hydra.sweep.dir"
        )
    return trial, space.trial_overrides(trial.params)


def job_value(future: Future, number: int) -> Any:
    """What the job returned: its metric, or None when it failed. A convlens error was printed by the job itself;
    anything else (a bug, a dead worker) gets one line here, its traceback being in the job's log."""
    try:
        return future.result().return_value
    except Exception as raised:  # Hydra keeps the job's exception in its JobReturn and raises it here
        why = (str(raised).splitlines() or [""])[0]
        print_error(f"trial {number} failed with {type(raised).__name__}: {why} (the traceback is in its job's log)")
        return None


def run_trials(
    study: optuna.Study, space: SearchSpace, slots: Slots, settings: SearchSettings, n_trials: int, sweep_dir: Path
) -> int:
    """Keep every slot busy until the study has ``n_trials`` complete or pruned trials; this sweeper's failures.

    A failed trial does not count, so another is asked in its place, until this sweeper's failures pass
    ``max_failure_rate`` × ``n_trials``. Running trials of other sweepers count while they are alive; when
    they are all that is left, this sweeper waits for them (one that goes stale is failed and replaced).
    """
    mine: dict[Future, optuna.Trial] = {}
    failures = 0
    with Heartbeat(study, settings.heartbeat_seconds) as heartbeat:
        while True:
            fail_stale_trials(study, settings.stale_after_seconds)
            done, running = counts(study)
            can_ask = failures <= settings.max_failure_rate * n_trials and not (settings.wait_for_batch and mine)
            while can_ask and len(mine) < slots.n_jobs and done + running < n_trials:
                trial, overrides = ask(study, space, sweep_dir)
                heartbeat.add(trial)
                console.print(f"trial {trial.number}: {' '.join(overrides)}", highlight=False, soft_wrap=True)
                mine[slots.submit(trial.number, overrides)] = trial
                running += 1
            if not mine and (done >= n_trials or running == 0 or not can_ask):
                return failures
            until = ALL_COMPLETED if settings.wait_for_batch else FIRST_COMPLETED
            finished, _ = wait(mine, timeout=settings.heartbeat_seconds, return_when=until)
            for future in finished:
                trial = mine.pop(future)
                heartbeat.remove(trial.number)
                state = tell_outcome(study, trial.number, job_value(future, trial.number))
                failures += state == optuna.trial.TrialState.FAIL
                console.print(f"trial {trial.number}: {state.name.lower()}", highlight=False)


def write_best(study: optuna.Study, sweep_dir: Path) -> None:
    """``optimization_results.yaml``: the best parameters and value so far (as hydra-optuna-sweeper wrote)."""
    try:
        best = study.best_trial
    except ValueError:  # no trial completed
        return
    OmegaConf.save(
        OmegaConf.create(
            {"name": "optuna", "best_params": best.params, "best_value": best.value, "best_trial": best.number}
        ),
        sweep_dir / "optimization_results.yaml",
    )


def run_search(settings: SearchSettings, slots_of: Any, arguments: list[str], sweep_dir: Path) -> None:
    """The whole search; bad settings end it with one line before any trial runs."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweeper prints its own lines on the study
    try:
        params = [f"{key!s}={value}" for key, value in (settings.params or {}).items()]
        space = search_space([*params, *arguments])
        sampler, n_trials = sampler_for(settings, space)
        study = open_study(
            settings.storage,
            settings.study_name,
            settings.direction,
            sampler=sampler,
            pruner=build_object("pruner", settings.pruner),
        )
        done, running = counts(study)
        console.print(
            f"study {settings.study_name} in {settings.storage}: {done} of {n_trials} trials complete or "
            f"pruned, {running} running; {settings.n_jobs} at a time",
            highlight=False,
            soft_wrap=True,
        )
        slots = slots_of(settings.n_jobs)
        try:
            failures = run_trials(study, space, slots, settings, n_trials, sweep_dir)
        finally:
            slots.close()
        if counts(study)[0] < n_trials:
            console.print(
                f"[yellow]stopped asking for trials: {failures} failed, more than "
                f"hydra.sweeper.max_failure_rate={settings.max_failure_rate} × {n_trials} trials allows"
            )
        write_best(study, sweep_dir)
    except ConvlensError as error:  # Hydra would show a traceback
        print_error(str(error))
        sys.exit(1)
