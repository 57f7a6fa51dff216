"""A line in the run's log file at each validation: the terminal has the progress bar, the log keeps the record."""

from __future__ import annotations

from pytorch_lightning import Callback, LightningModule, Trainer

from convlens.startup.run_log import log


class ProgressLog(Callback):
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = ", ".join(
            f"{key} {float(value):.4f}" for key, value in sorted(trainer.callback_metrics.items()) if value.numel() == 1
        )
        log.info("epoch %d, step %d: %s", trainer.current_epoch, trainer.global_step, metrics)
