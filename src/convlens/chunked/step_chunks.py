"""The callback that makes Lightning's loop count chunks of steps where it counted batches.

Lightning validates, limits and checks its interval in batches; here a batch is a chunk, so once the
DataModule knows how long an epoch is, the trainer's ``limit_train_batches`` and ``val_check_interval`` are
rewritten in chunks before the fit loop reads them, the training loader is made to hand over a chunk per call,
and the progress bar is moved on by the steps in each call.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

from pytorch_lightning import Callback, LightningDataModule, LightningModule, Trainer
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.utilities import rank_zero_warn

from convlens.chunked.lightning_internals import check_chunk_internals
from convlens.chunked.plan import ChunkPlan
from convlens.chunked.step_batches import in_chunks
from convlens.errors import ConvlensError
from convlens.lightning_internals import move_progress_bar


class StepChunks(Callback):
    def __init__(self, steps_per_call: int | str) -> None:
        self.steps_per_call = steps_per_call
        self.plan: ChunkPlan | None = None
        self.datamodule: LightningDataModule | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        check_chunk_internals(trainer)
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "train_steps_per_epoch"):
            raise ConvlensError(
                f"model.steps_per_call={self.steps_per_call} needs a convlens DataModule that counts its "
                "epoch's steps (train_steps_per_epoch); set model.steps_per_call=1 or stepping=lightning"
            )
        if str(trainer.precision).startswith("16"):
            raise ConvlensError(
                f"trainer.precision={trainer.precision} unscales gradients in Lightning's per-step optimizer step, "
                "which several steps per call leave out; use trainer.precision=bf16-mixed, or model.steps_per_call=1"
            )
        steps = datamodule.train_steps_per_epoch(trainer.limit_train_batches)
        plan = self.plan = pl_module.chunk_plan = ChunkPlan.for_trainer(trainer, steps, self.steps_per_call)
        trainer.limit_train_batches = plan.calls_per_epoch
        trainer.val_check_interval = plan.val_every_steps // plan.steps_per_call
        # The DataModule's own loader, remade per fit to hand over chunks; teardown gives its method back.
        own_loader = functools.partial(type(datamodule).train_dataloader, datamodule)
        datamodule.train_dataloader = lambda: in_chunks(own_loader(), plan.steps_per_call)
        self.datamodule = datamodule
        # Lightning compares log_every_n_steps with its count of calls; the comparison that holds is in steps.
        warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the logging")
        # ModelCheckpoint asks manual-optimization modules for the weights before the step; the weights after
        # it, which it saves, are the ones a resume needs.
        warnings.filterwarnings("ignore", message=r"Using ModelCheckpoint with manual optimization")
        if trainer.log_every_n_steps > plan.steps_per_epoch and not trainer.fast_dev_run:
            rank_zero_warn(
                f"an epoch has {plan.steps_per_epoch} training steps, fewer than "
                f"trainer.log_every_n_steps={trainer.log_every_n_steps}: the step loss is written less "
                "than once an epoch; lower trainer.log_every_n_steps to see it"
            )

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.datamodule is not None:
            vars(self.datamodule).pop("train_dataloader", None)
            self.datamodule = None

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        bar = rich_training_bar(trainer)
        if bar is not None and self.plan is not None:  # Lightning sized it in calls; the bar counts steps
            bar.progress.update(bar.train_progress_bar_id, total=self.plan.steps_per_epoch)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        bar = rich_training_bar(trainer)
        if bar is not None and self.plan is not None:
            done = min(self.plan.steps_per_epoch, (batch_idx + 1) * self.plan.steps_per_call)
            move_progress_bar(bar, bar.train_progress_bar_id, done)


def rich_training_bar(trainer: Trainer) -> RichProgressBar | None:
    """The run's rich progress bar while its training bar is shown; None for another bar or none."""
    bar = trainer.progress_bar_callback
    if isinstance(bar, RichProgressBar) and bar.progress is not None and bar.train_progress_bar_id is not None:
        return bar
    return None
