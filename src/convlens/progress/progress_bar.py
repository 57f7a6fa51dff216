"""A rich progress bar that counts optimizer steps and does not read the logged metrics after every batch.

Lightning's ``RichProgressBar`` gathers every logged metric (a pass over all results and a ``.item()``
each) after each training batch, although its display redraws only ``refresh_rate`` times a second; on a
tiny model that bookkeeping is a visible part of a step. This one moves the bar every batch (cheap) and
reads the metrics every ``metrics_every_n_batches`` batches and at the end of each epoch and validation.
With several optimizer steps per call, ``chunked.step_chunks`` moves the bar on by the steps in each call.
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

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.train_progress_bar_id is None or (batch_idx + 1) % self.metrics_every_n_batches == 0:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        move_progress_bar(self, self.train_progress_bar_id, batch_idx + 1)
