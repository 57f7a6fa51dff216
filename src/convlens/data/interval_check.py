"""The validation interval checked against the training data once it is loaded, for convlens's data modules.

For MNIST ``check_train_config`` knows the epoch's length beforehand; a folder of images is counted only
once it is read. Lightning would otherwise stop with a traceback after setting up, saying the same thing.
"""

from __future__ import annotations

from pytorch_lightning import Callback, LightningModule, Trainer

from convlens.startup.config_checks import check_interval_fits


class ValCheckIntervalFitsTheEpoch(Callback):
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        if stage != "fit" or getattr(datamodule, "train_set", None) is None:
            return  # another data module: Lightning checks the interval itself
        check_interval_fits(trainer, len(datamodule.train_set), datamodule.hparams.batch_size, trainer.world_size)
