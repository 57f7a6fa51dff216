"""A finished search in a few committed lines: the study database stays in its sweep dir under ``logs/`` (never
committed), and this summary goes beside the page that quotes it, so the figures a page gives can be checked.

How far each trial got is the evidence that the search was multi-fidelity: the pruner stopped most trials after
a few hundred steps, and only the promising ones trained for the whole budget.
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from convlens.errors import ConvlensError
from convlens.sweeps.report import param_importances
from convlens.sweeps.sweep_study import load_study, multirun_config, study_location

SECONDS_PER_HOUR = 3600


def last_step(trial: FrozenTrial) -> int:
    """The last step a trial reported at: its length in optimizer steps (0 if it reported nothing)."""
    return max(trial.intermediate_values, default=0)


def trial_seconds(trial: FrozenTrial) -> float:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return 0.0
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def how_far(trials: list[FrozenTrial]) -> dict[str, Any]:
    """Steps each finished trial trained, as quartiles, and how many reached the longest trial's length."""
    steps = sorted(last_step(trial) for trial in trials if trial.state.is_finished() and trial.intermediate_values)
    if not steps:
        return {}
    quartiles = statistics.quantiles(steps, n=4) if len(steps) > 1 else [steps[0]] * 3
    return {
        "min": steps[0],
        "quartiles": [round(q) for q in quartiles],
        "max": steps[-1],
        "total": sum(steps),
        "reached_max": sum(step == steps[-1] for step in steps),
    }


def search_config(sweep_dir: Path) -> dict[str, Any]:
    """What was searched and how: the command's overrides, the space, the sampler, the pruner, the trial count."""
    cfg = multirun_config(sweep_dir)
    if cfg is None:
        return {}
    sweeper = cfg.hydra.sweeper
    return {
        "overrides": list(cfg.hydra.overrides.task),
        "n_trials": sweeper.get("n_trials"),
        "trials_at_once": OmegaConf.select(cfg, "hydra.launcher.n_jobs", default=1),
        "threads_per_trial": cfg.get("threads"),
        "sampler": OmegaConf.to_container(sweeper.sampler, resolve=True),
        "pruner": OmegaConf.to_container(sweeper.pruner, resolve=True),
        "space": OmegaConf.to_container(sweeper.params),
    }


def summarise(study: optuna.Study, sweep_dir: Path, cpu_seconds: float | None = None) -> dict[str, Any]:
    """``cpu_seconds``: the search command's own CPU time (user + sys of it and its workers), when it was measured;
    the trials' durations alone overstate it whenever other work shared the cores."""
    trials = study.get_trials(deepcopy=False)
    if not any(trial.state == TrialState.COMPLETE for trial in trials):
        raise ConvlensError(f"the search in {sweep_dir} has no completed trial yet; summarise it when one has")
    config = search_config(sweep_dir)
    trial_hours = sum(trial_seconds(trial) for trial in trials) / SECONDS_PER_HOUR
    started = [trial.datetime_start for trial in trials if trial.datetime_start]
    ended = [trial.datetime_complete for trial in trials if trial.datetime_complete]
    importances, why_not = param_importances(study)
    best = study.best_trial
    return {
        "study": study.study_name,
        "direction": study.direction.name.lower(),
        "search": config,
        "trials": dict(sorted(Counter(trial.state.name.lower() for trial in trials).items())),
        "steps_per_trial": how_far(trials),
        "hours": {
            "wall": round((max(ended) - min(started)).total_seconds() / SECONDS_PER_HOUR, 2),
            "trials": round(trial_hours, 2),
            "cpu": None if cpu_seconds is None else round(cpu_seconds / SECONDS_PER_HOUR, 2),
        },
        "started": min(started).isoformat(timespec="seconds"),
        "ended": max(ended).isoformat(timespec="seconds"),
        "best": {"trial": best.number, "value": best.value, "steps": last_step(best), "params": best.params},
        "importances": ({key: round(value, 4) for key, value in importances.items()} if importances else why_not),
    }


def summarise_search(sweep_dir: Path, cpu_seconds: float | None = None) -> dict[str, Any]:
    location = study_location(sweep_dir)
    if location is None:
        raise ConvlensError(
            f"{sweep_dir} holds no search (no optuna.db, no hydra.sweeper.storage in its "
            "multirun.yaml); pass the sweep dir of a hparams_search run"
        )
    return summarise(load_study(location), sweep_dir, cpu_seconds)
