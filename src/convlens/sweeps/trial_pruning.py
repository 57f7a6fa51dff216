"""A search job's own Optuna trial: it reports the optimised metric at every validation and stops once pruned.

How a job finds its trial: the sweeper launches trial N as job N, so ``hydra.job.num`` is the trial number (and
``<sweep dir>/N`` its folder), and every job's config carries the sweeper's (``hydra.sweeper``): the storage URL,
the study name and the pruner. The job opens the same storage (a sqlite or journal file, or a database server
that every machine reaches), loads the study with that pruner, and takes trial N. It never tells the trial's
end: the sweeper does, from what the job returned and the ``pruned_at_step`` the job left on the trial.

Why not optuna-integration's ``PyTorchLightningPruningCallback``: it raises ``TrialPruned`` inside ``fit``, so a
pruned run would end without its test, ``metrics.json`` or final checkpoint. ``ReportToTrial`` only sets
``trainer.should_stop`` after the validation that decided it: validation falls between chunks of steps
(``convlens/chunked/``), so the run stops at the end of the chunk in flight, saves ``last.ckpt`` and is
tested and recorded like any other run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning import Callback, LightningModule, Trainer

from convlens.errors import ConvlensError
from convlens.sweeps.multirun import SEARCH_SWEEPER, in_multirun

if TYPE_CHECKING:  # Optuna is the sweep extra's: a run that is no search job never imports it
    import optuna

OPTUNA_WRITTEN_FOR = "5.0.0"  # the Optuna whose private FrozenTrial._trial_id trial_by_number reads
PRUNED_AT_STEP = "pruned_at_step"  # the trial's user attribute the sweeper reads to tell PRUNED


def trial_by_number(study: optuna.Study, number: int) -> optuna.Trial:
    """Trial ``number`` of ``study``, to report to. Optuna names trials by id inside a storage; the id is the
    private ``FrozenTrial._trial_id``, read here only."""
    import optuna

    for frozen in study.get_trials(deepcopy=False):
        if frozen.number == number:
            if not hasattr(frozen, "_trial_id"):
                raise ConvlensError(
                    f"optuna {optuna.__version__} has no FrozenTrial._trial_id, which convlens reads "
                    f"(written for optuna {OPTUNA_WRITTEN_FOR}); "
                    f"pip install optuna=={OPTUNA_WRITTEN_FOR}"
                )
            return optuna.Trial(study, frozen._trial_id)
    raise ConvlensError(
        f"the study {study.study_name} has no trial {number}; a search job is started by the "
        "sweeper, with hydra.job.num = its trial number"
    )


def trial_of_this_job() -> optuna.Trial | None:
    """This job's trial when convlens's Optuna sweeper launched it, else None (a single run, a grid)."""
    if not in_multirun():
        return None
    hydra = HydraConfig.get()
    sweeper = hydra.sweeper
    if sweeper.get("_target_") != SEARCH_SWEEPER:
        return None
    import optuna

    from convlens.sweeps.study_storage import open_storage

    study = optuna.load_study(
        study_name=sweeper.study_name, storage=open_storage(sweeper.storage), pruner=instantiate(sweeper.pruner)
    )
    return trial_by_number(study, int(hydra.job.num))


class ReportToTrial(Callback):
    """After each validation check: report ``monitor`` at ``trainer.global_step`` (optimizer steps), and stop the
    run when the study's pruner says so."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor
        self.pruned_at_step: int | None = None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.is_global_zero and value is not None:
            self.trial.report(float(value), trainer.global_step)
            prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune):  # every process stops together
            self.pruned_at_step = trainer.global_step
            if trainer.is_global_zero:
                self.trial.set_user_attr(PRUNED_AT_STEP, trainer.global_step)
            trainer.should_stop = True

    def outcome(self) -> dict[str, Any]:
        """What ``metrics.json`` says of the trial."""
        return {
            "status": "complete" if self.pruned_at_step is None else "pruned",
            "pruned_at_step": self.pruned_at_step,
            "trial_number": self.trial.number,
        }


def search_callbacks(cfg: DictConfig) -> list[ReportToTrial]:
    """The pruning callback for a search job, none otherwise."""
    trial = trial_of_this_job()
    return [] if trial is None else [ReportToTrial(trial, cfg.optimized_metric)]


def run_outcome(trainer: Trainer) -> dict[str, Any]:
    """``status`` and ``pruned_at_step`` for ``metrics.json``, and ``trial_number`` for a search job."""
    for callback in trainer.callbacks:
        if isinstance(callback, ReportToTrial):
            return callback.outcome()
    return {"status": "complete", "pruned_at_step": None}
