"""Stop a run whose loss became nan or inf before it saves a single ruined checkpoint or draws ruined weights."""

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
    """Stop training at a nan or infinite loss, and let no checkpoint or validation see weights that are not finite.

    Reading a GPU loss on the host costs a synchronisation per step, so each call only folds its check into a
    tensor on the device (the first bad step, its epoch and its loss); the host reads that each time the step
    count passes a multiple of ``check_every_n_steps`` (a call of several steps may jump over the multiple
    itself), before every validation check and before every checkpoint is written. A run therefore stops at
    most ``check_every_n_steps`` plus one call's steps late, the message names the first bad step however late
    it is read, and nothing written or drawn after the bad step exists: the last good checkpoint stays the newest.
    """

    def __init__(self, check_every_n_steps: int = 50) -> None:
        if check_every_n_steps < 1:
            raise ConvlensError(
                f"callbacks.finite_loss.check_every_n_steps={check_every_n_steps} must be at least 1; try 50"
            )
        self.check_every_n_steps = check_every_n_steps
        self._first_bad: torch.Tensor | None = None  # [step, epoch, loss] of the first non-finite loss; step -1: none
        self._checked_at = 0  # the global step of the last host read

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._checked_at = trainer.global_step  # a resumed run counts its checks from where it starts

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        losses = step_losses(outputs)
        if losses is None:
            return
        if self._first_bad is None:
            self._first_bad = torch.tensor([-1.0, 0.0, 0.0], device=losses.device)
        bad = ~torch.isfinite(losses)
        first = torch.argmax(bad.int())  # the first bad step of the call (0 if none: then `found` is false)
        found = bad.any() & (self._first_bad[0] < 0)
        # Steps are counted as global_step counts them: the call's steps end at the trainer's global_step.
        step = first + trainer.global_step - len(losses) + 1
        here = torch.stack([step.to(losses), torch.full_like(losses[0], trainer.current_epoch), losses[first]])
        self._first_bad = torch.where(found, here, self._first_bad)
        if trainer.global_step // self.check_every_n_steps > self._checked_at // self.check_every_n_steps:
            self._stop_if_diverged(trainer)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:  # what validation draws and saves must be finite
            self._stop_if_not_finite(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop_if_diverged(trainer)  # the last steps may not have reached a check

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._stop_if_not_finite(trainer, pl_module)

    def _stop_if_not_finite(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop_if_diverged(trainer)
        if not torch.stack([torch.isfinite(p).all() for p in pl_module.parameters()]).all():
            raise TrainingDiverged(
                f"the weights became nan or infinite by step {trainer.global_step} although the loss was finite; "
                f"{last_good(trainer)}; lower model.optimizer.lr"
            )

    def _stop_if_diverged(self, trainer: Trainer) -> None:
        self._checked_at = trainer.global_step
        if self._first_bad is None:
            return
        step, epoch, loss = self._first_bad.tolist()
        if step < 0:
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else "?"
        raise TrainingDiverged(
            f"training diverged and was stopped: the loss was {loss} at step {int(step)} "
            f"(epoch {int(epoch)}); {last_good(trainer)}; lower model.optimizer.lr (it is {lr}) and train again"
        )


def step_losses(outputs: Any) -> torch.Tensor | None:
    """The loss of each optimizer step in a training call: several for a chunk of steps, else the one loss."""
    if isinstance(outputs, Mapping):
        outputs = outputs.get("step_losses", outputs.get("loss"))
    if not isinstance(outputs, torch.Tensor):
        return None
    return outputs.detach().float().reshape(-1)


def last_good(trainer: Trainer) -> str:
    """Where the newest checkpoint, written before the loss went bad, lies."""
    saved = [
        Path(path)
        for callback in trainer.checkpoint_callbacks
        if isinstance(callback, ModelCheckpoint)
        for path in (callback.last_model_path, callback.best_model_path)
        if path and Path(path).is_file()
    ]
    if not saved:
        return "no checkpoint had been saved yet"
    newest = max(saved, key=lambda path: path.stat().st_mtime)
    return f"the last good checkpoint, {newest}, is kept"
