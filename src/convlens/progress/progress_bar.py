"""A rich progress bar that counts optimizer steps and does not read the logged metrics after every batch.

Lightning's ``RichProgressBar`` gathers every logged metric (a pass over all results and a ``.item()``
each) after each training batch, although its display redraws only ``refresh_rate`` times a second; on a
tiny model that bookkeeping is a visible part of a step. This one moves the bar every batch (cheap) and
reads the metrics every ``metrics_every_n_batches`` batches and at the end of each epoch and validation.
When the module takes several optimizer steps per call (``models.chunked_steps``), Lightning counts calls;
the bar counts the steps in them, as ``global_step`` does.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar

from convlens.lightning_internals import move_progress_bar


class LightRichProgressBar(RichProgressBar):
    def __init__(self, metrics_every_n_batches: int = 50, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics_every_n_batches = max(1, int(metrics_every_n_batches))

    @property
    def total_train_batches(self) -> int | float:
        plan = getattr(self.trainer.lightning_module, "chunk_plan", None)
        return super().total_train_batches if plan is None else plan.steps_per_epoch

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        plan = getattr(pl_module, "chunk_plan", None)
        every_call = plan is not None  # a call is many steps: reading the metrics once per call is cheap
        if every_call or self.train_progress_bar_id is None or (batch_idx + 1) % self.metrics_every_n_batches == 0:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        done = batch_idx + 1 if plan is None else min(plan.steps_per_epoch, (batch_idx + 1) * plan.steps_per_call)
        move_progress_bar(self, self.train_progress_bar_id, done)
