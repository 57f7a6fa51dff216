"""What TensorBoard gets from the pictures callback and the run's end, given to the other trackers too.

TensorBoard takes pictures at every validation and an HParams entry at the end (``pictures.callback``,
``sweeps.hparams_summary``). MLflow and W&B get what they are made for instead: the end-of-fit pictures as files
(MLflow artifacts, W&B images), the run's settings as parameters, its timings, and the best checkpoint's
path. Any other logger (TensorBoard, CSV) is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.loggers import Logger, MLFlowLogger, WandbLogger

from convlens.sweeps.hparams_summary import hyperparameters

RUN_METRICS = ("wall_seconds", "seconds_per_epoch")  # metrics.json's figures that Lightning does not log


def trackers(trainer: Trainer) -> list[Logger]:
    return [logger for logger in trainer.loggers if isinstance(logger, (MLFlowLogger, WandbLogger))]


def log_pictures(trainer: Trainer, pictures: Mapping[str, Path]) -> None:
    """The PNGs written into the run folder, by name: MLflow artifacts under ``pictures/``, W&B images."""
    for logger in trackers(trainer):
        for name, path in pictures.items():
            if isinstance(logger, MLFlowLogger):
                logger.experiment.log_artifact(logger.run_id, str(path), "pictures")
            else:
                logger.log_image(key=f"pictures/{name}", images=[str(path)], step=trainer.global_step)


def summary_lines(trainer: Trainer, run_dir: Path) -> list[str]:
    """How to look at the run in each tracker, for the run's last lines."""
    lines = []
    for logger in trackers(trainer):
        if isinstance(logger, MLFlowLogger):
            lines.append(f"MLflow: make mlflow, run {logger.run_id} in experiment {logger.name}")
        elif logger.experiment.settings.mode == "offline":
            lines.append(f"W&B (offline): wandb sync {next(run_dir.glob('wandb/offline-run-*'), run_dir / 'wandb')}")
    return lines


def log_run_end(trainer: Trainer, cfg: DictConfig, model: LightningModule, metrics: Mapping[str, Any]) -> None:
    """The settings Lightning did not log (it logs the model's hyperparameters at the start), the run's
    timings and the best checkpoint's path; then a W&B run is finished, so the next job of a sweep starts its own."""
    settings = {key: value for key, value in hyperparameters(cfg, model).items() if key not in model.hparams}
    final = {key: metrics[key] for key in RUN_METRICS if metrics.get(key) is not None}
    for logger in trackers(trainer):
        logger.log_hyperparams(settings)
        logger.log_metrics(final, step=trainer.global_step)
        if isinstance(logger, MLFlowLogger):
            logger.experiment.set_tag(logger.run_id, "best_ckpt", str(metrics.get("best_ckpt")))
        else:
            logger.experiment.summary["best_ckpt"] = str(metrics.get("best_ckpt"))
            logger.experiment.finish()
