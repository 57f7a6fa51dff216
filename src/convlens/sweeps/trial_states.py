"""What a search reads and writes about its trials in the study: how many count, who is alive, how each ended.

Several sweepers may share one study (terminals, machines, a SLURM array). Each marks its running trials with
a heartbeat (a user attribute, the time, refreshed every ``heartbeat_seconds``): it works on every storage,
the journal file included, which has no heartbeat of Optuna's. A RUNNING trial whose heartbeat is older than
``stale_after_seconds`` belongs to a sweeper that was killed, and is marked FAIL by whichever sweeper sees it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from convlens.sweeps.trial_pruning import PRUNED_AT_STEP

HEARTBEAT = "convlens_heartbeat"  # seconds since the epoch, written by the trial's sweeper
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # what n_trials counts


def frozen_trial(study: optuna.Study, number: int) -> FrozenTrial:
    return next(trial for trial in study.get_trials(deepcopy=False) if trial.number == number)


def counts(study: optuna.Study) -> tuple[int, int]:
    """(complete or pruned, running) over every sweeper of the study."""
    states = [trial.state for trial in study.get_trials(deepcopy=False)]
    return sum(state in COUNTED for state in states), states.count(TrialState.RUNNING)


def last_sign_of_life(trial: FrozenTrial) -> float:
    started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    return max(float(trial.user_attrs.get(HEARTBEAT, 0.0)), started)


def fail_stale_trials(study: optuna.Study, stale_after_seconds: float) -> list[int]:
    """Mark FAIL the RUNNING trials nobody has kept alive; their numbers (another sweeper may race: fine)."""
    now, failed = time.time(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if now - last_sign_of_life(trial) > stale_after_seconds:
            try:
                study.tell(trial.number, state=TrialState.FAIL)
                failed.append(trial.number)
            except (RuntimeError, ValueError):  # told already, by its own sweeper or another
                pass
    return failed


def tell_outcome(study: optuna.Study, number: int, value: Any) -> TrialState:
    """COMPLETE with the job's value, PRUNED (Optuna keeps the last reported value) when the job said it was
    pruned, FAIL when the job failed or returned no number."""
    if frozen_trial(study, number).user_attrs.get(PRUNED_AT_STEP) is not None:
        tell(study, number, None, TrialState.PRUNED)
        return TrialState.PRUNED
    try:
        result = float(value)
    except (TypeError, ValueError):
        result = float("nan")
    state = TrialState.FAIL if result != result else TrialState.COMPLETE
    tell(study, number, result if state == TrialState.COMPLETE else None, state)
    return state


def tell(study: optuna.Study, number: int, value: float | None, state: TrialState) -> None:
    """``study.tell``; the grid sampler then calls ``study.stop()`` once its grid is done, which raises outside
    ``optimize``, after the trial's state is stored: the search ends by its own count instead."""
    try:
        study.tell(number, value, state=state)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise


class Heartbeat:
    """A thread that writes the time onto each of this sweeper's running trials every ``seconds``."""

    def __init__(self, study: optuna.Study, seconds: float) -> None:
        self.study, self.seconds = study, seconds
        self.trials: dict[int, optuna.Trial] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.beat, name="trial-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """A sweeper stopped by an exception (Ctrl-C, an error) fails its running trials now, so that a resume
        need not wait for them to go stale; one killed by SIGKILL leaves them to go stale."""
        self.stopped.set()
        self.thread.join()
        if exc_type is not None:
            for number in list(self.trials):
                try:
                    self.study.tell(number, state=TrialState.FAIL)
                except (RuntimeError, ValueError):  # told already
                    pass

    def add(self, trial: optuna.Trial) -> None:
        trial.set_user_attr(HEARTBEAT, time.time())
        with self.lock:
            self.trials[trial.number] = trial

    def remove(self, number: int) -> None:
        with self.lock:
            self.trials.pop(number, None)

    def beat(self) -> None:
        while not self.stopped.wait(self.seconds):
            with self.lock:
                for number, trial in list(self.trials.items()):
                    try:
                        trial.set_user_attr(HEARTBEAT, time.time())
                    except (RuntimeError, ValueError):  # failed as stale by another sweeper: no longer ours
                        self.trials.pop(number)
