"""Stop a run whose loss became nan or inf before it saves a single ruined checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint

from convlens.errors import ConvlensError


class TrainingDiverged(ConvlensError):
    """The loss or the weights stopped being finite numbers."""


class StopOnNonFiniteLoss(Callback):
    """Stop training at a nan or infinite loss, and refuse to write a checkpoint whose weights are not finite.

    Reading a GPU loss on the host costs a synchronisation per step, so each step only folds its check into a
    tensor on the device (the first bad step and its loss); the host reads that every ``check_every_n_steps``
    steps and before every checkpoint is written. A run therefore stops at most that many steps late, and no
    checkpoint written after the bad step exists: the last good one stays the newest.
    """

    def __init__(self, check_every_n_steps: int = 50) -> None:
        if check_every_n_steps < 1:
            raise ConvlensError(
                f"callbacks.finite_loss.check_every_n_steps={check_every_n_steps} must be at least 1; try 50")
        self.check_every_n_steps = check_every_n_steps
        self._first_bad: torch.Tensor | None = None  # [step, loss] of the first non-finite loss; step -1: none

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        loss = loss.detach().float()
        if self._first_bad is None:
            self._first_bad = torch.tensor([-1.0, 0.0], device=loss.device)
        found = ~torch.isfinite(loss) & (self._first_bad[0] < 0)
        here = torch.stack([torch.full_like(loss, trainer.global_step), loss])
        self._first_bad = torch.where(found, here, self._first_bad)
        if trainer.global_step % self.check_every_n_steps == 0:
            self._stop_if_diverged(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop_if_diverged(trainer)  # the last steps may not have reached a check

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._stop_if_diverged(trainer)
        if not torch.stack([torch.isfinite(p).all() for p in pl_module.parameters()]).all():
            raise TrainingDiverged(
                f"the weights became nan or infinite by step {trainer.global_step} although the loss was finite; "
                f"{last_good(trainer)}; lower model.optimizer.lr")

    def _stop_if_diverged(self, trainer: Trainer) -> None:
        if self._first_bad is None:
            return
        step, loss = self._first_bad.tolist()
        if step < 0:
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else "?"
        raise TrainingDiverged(
            f"training diverged and was stopped: the loss was {loss} at step {int(step)} "
            f"(epoch {trainer.current_epoch}); {last_good(trainer)}; lower model.optimizer.lr (it is {lr}) "
            "and train again")


def last_good(trainer: Trainer) -> str:
    """Where the newest checkpoint, written before the loss went bad, lies."""
    saved = [Path(path) for callback in trainer.checkpoint_callbacks if isinstance(callback, ModelCheckpoint)
             for path in (callback.last_model_path, callback.best_model_path) if path and Path(path).is_file()]
    if not saved:
        return "no checkpoint had been saved yet"
    newest = max(saved, key=lambda path: path.stat().st_mtime)
    return f"the last good checkpoint, {newest}, is kept"
