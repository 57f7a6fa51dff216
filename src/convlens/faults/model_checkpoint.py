"""ModelCheckpoints that remember the best score across a resume, and leave ``last.ckpt`` at the final step."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint


class BestAcrossRunsCheckpoint(ModelCheckpoint):
    """Resumed in a new run folder, still compare against the best checkpoint of the run it continues.

    Lightning forgets the best score when the folder changes (every resume gets a new Hydra run folder), so
    the first validation after a resume would count as the best and be tested instead of the true best. The
    earlier run's files stay where they are: Lightning never deletes files outside this callback's folder.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        earlier = state_dict.get("dirpath", self.dirpath)
        best = state_dict.get("best_model_path")
        carried_over = earlier != self.dirpath and bool(best) and Path(best).is_file()
        with warnings.catch_warnings():
            if carried_over:  # Lightning's "won't be reloaded" warning: they are, just below
                warnings.filterwarnings("ignore", message="The dirpath has changed")
            super().load_state_dict(state_dict)
        if carried_over:
            self.best_model_score = state_dict["best_model_score"]
            self.best_k_models = {path: score for path, score in state_dict.get("best_k_models", {}).items()
                                  if Path(path).is_file()}
            self.kth_best_model_path = state_dict.get("kth_best_model_path", self.kth_best_model_path)
            self.kth_value = state_dict.get("kth_value", self.kth_value)


class StepCheckpoint(ModelCheckpoint):
    """``last.ckpt`` every N training steps, and once more when fit ends, so that it holds the final state.

    Lightning rewrites ``last.ckpt`` only when one of its triggers fires (a step count, a validation), so the
    steps after the last trigger would be missing from it; however training steps happen, this save comes
    after the last of them.
    """

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.save_last or trainer.fast_dev_run or self.dirpath is None:
            return
        path = Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
        trainer.save_checkpoint(path, weights_only=False)  # everything a resume needs
        self.last_model_path = str(path)
