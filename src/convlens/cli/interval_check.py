"""The validation interval checked against the training data once it is loaded, for any data module.

For MNIST ``check_train_config`` knows the epoch's length beforehand; a folder of images is counted only
once it is read. Lightning would otherwise stop with a traceback after setting up, saying the same thing.
"""

from __future__ import annotations

from pytorch_lightning import Callback, LightningModule, Trainer

from convlens.cli.config_checks import check_interval_fits, limited


class ValCheckIntervalFitsTheEpoch(Callback):
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or trainer.fast_dev_run or trainer.datamodule is None:
            return
        loader = trainer.datamodule.train_dataloader()
        limit = trainer.limit_train_batches if trainer.limit_train_batches != 1.0 else None
        counted = f"{len(loader)} batches of {loader.batch_size or 'several'} images" + (
            f", cut by trainer.limit_train_batches={limit}" if limit is not None else "")
        check_interval_fits(trainer.val_check_interval, trainer.check_val_every_n_epoch,
                            limited(len(loader), limit), counted)
