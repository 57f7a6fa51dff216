"""The ``_target_`` of conf/logger/mlflow.yaml and wandb.yaml: Lightning's logger, once its extra is there.

Lightning's own loggers fail deep inside the run when their package is missing; these say at once, in one line,
which ``pip install`` fixes it, and make the folders the trackers write into.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import MLFlowLogger, WandbLogger

from convlens.startup.extras import import_extra

SQLITE = "sqlite:///"


def mlflow_logger(tracking_uri: str, **settings: Any) -> MLFlowLogger:
    """MLflow's logger; a SQLite store's folder is made first (SQLite makes the file, not its folder)."""
    import_extra("mlflow", "mlflow", "logger=mlflow")
    if tracking_uri.startswith(SQLITE):
        Path(tracking_uri.removeprefix(SQLITE)).parent.mkdir(parents=True, exist_ok=True)
    return MLFlowLogger(tracking_uri=tracking_uri, **settings)


def wandb_logger(save_dir: str, **settings: Any) -> WandbLogger:
    """W&B's logger, writing its run (offline: for ``wandb sync`` later) under ``save_dir``."""
    import_extra("wandb", "wandb", "logger=wandb")
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(save_dir=save_dir, **settings)
