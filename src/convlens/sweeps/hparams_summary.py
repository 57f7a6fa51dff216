"""One HParams entry per run, so TensorBoard pointed at a sweep dir compares the runs side by side."""

from __future__ import annotations

from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.loggers import TensorBoardLogger

# metrics.json key → HParams metric tag; own tags, so the logged curves of val/acc_best etc. get no extra point
HPARAMS_METRICS = {
    "val/acc_best": "hparams/val_acc_best",
    "test/acc": "hparams/test_acc",
    "wall_seconds": "hparams/wall_seconds",
}


def hyperparameters(cfg: DictConfig, model: LightningModule) -> dict[str, Any]:
    """The settings a sweep varies: the model's own hyperparameters plus batch size, epochs and seed."""
    return {
        **model.hparams,
        "batch_size": cfg.data.batch_size,
        "max_epochs": cfg.trainer.max_epochs,
        "seed": cfg.get("seed"),
        "overrides": overrides_text(),
    }


def overrides_text() -> str:
    """The command-line overrides of this job: in a sweep, what sets it apart from the others."""
    return " ".join(HydraConfig.get().overrides.task) if HydraConfig.initialized() else ""


def log_hparams_with_metrics(
    trainer: Trainer, cfg: DictConfig, model: LightningModule, metrics: dict[str, Any]
) -> None:
    final = {tag: metrics[key] for key, tag in HPARAMS_METRICS.items() if metrics.get(key) is not None}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(hyperparameters(cfg, model), final)
            logger.finalize("success")
