"""ModelCheckpoints that remember the best score across a resume, and leave ``last.ckpt`` at the final step."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint

from convlens.lightning_internals import every_n_train_steps, save_as_scheduled, validation_follows
from convlens.models.resume_position import reopen_an_unfinished_epoch


class BestAcrossRunsCheckpoint(ModelCheckpoint):
    """Resumed in a new run folder, still compare against the best checkpoint of the run it continues.

    Lightning forgets the best score when the folder changes (every resume gets a new Hydra run folder), so
    the first validation after a resume would count as the best and be tested instead of the true best. The
    earlier run's files stay where they are: Lightning never deletes files outside this callback's folder.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        earlier = state_dict.get("dirpath", self.dirpath)
        best = state_dict.get("best_model_path")
        carried_over = earlier != self.dirpath and bool(best and Path(best).is_file())
        with warnings.catch_warnings():
            if carried_over:  # Lightning's "won't be reloaded" warning: they are, just below
                warnings.filterwarnings("ignore", message="The dirpath has changed")
            super().load_state_dict(state_dict)
        if carried_over:
            self.best_model_score = state_dict["best_model_score"]
            self.best_k_models = {
                path: score for path, score in state_dict.get("best_k_models", {}).items() if Path(path).is_file()
            }
            self.kth_best_model_path: str = state_dict.get("kth_best_model_path", self.kth_best_model_path)
            self.kth_value: torch.Tensor = state_dict.get("kth_value", self.kth_value)


class StepCheckpoint(ModelCheckpoint):
    """``last.ckpt`` every N training steps, and once more when fit ends, so that it holds the final state.

    Lightning rewrites ``last.ckpt`` only when one of its triggers fires (a step count, a validation), so the
    steps after the last trigger would be missing from it; however training steps happen, this save comes
    after the last of them.

    A step that a validation follows is saved after that validation, not before it: Lightning resumes a
    checkpoint written at the end of a training batch as if the validation due there had run, so a resume from
    the earlier file would skip it (its accuracy, its best checkpoint, and the random numbers its sampler draws).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._due_after_validation: int | None = None  # the step whose save waits for its validation
        self._saving_at_fit_end = False

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        every = every_n_train_steps(self)
        if every > 0 and trainer.global_step % every == 0 and validation_follows(trainer):
            self._due_after_validation = trainer.global_step
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        due = self._due_after_validation == trainer.global_step and not trainer.sanity_checking
        if due and save_as_scheduled(self, trainer):
            self._due_after_validation = None
        super().on_validation_end(trainer, pl_module)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """After the last step, and also when a resumed run had nothing left to train: its folder gets one too."""
        if not self.save_last or trainer.fast_dev_run or self.dirpath is None:
            return
        path = Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
        self._saving_at_fit_end = True
        try:
            trainer.save_checkpoint(path, weights_only=False)  # everything a resume needs
        finally:
            self._saving_at_fit_end = False
        self.last_model_path = str(path)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._saving_at_fit_end:
            reopen_an_unfinished_epoch(trainer, checkpoint)
