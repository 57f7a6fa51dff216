"""The LightningModule around ConvNet: loss, optimizer, and one torchmetrics object per split.

Hyperparameters are stored as plain dicts (the optimizer and scheduler as Hydra configs, instantiated in
``configure_optimizers``) so a checkpoint holds only tensors and primitives, loads with
``weights_only=True``, and rebuilds its own architecture without the run's config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning import LightningModule
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from convlens.errors import ConvlensError
from convlens.models.convnet import ConvNet


def plain(config: Mapping | None) -> dict | None:
    """A Hydra/OmegaConf node as a plain dict, safe to pickle into a checkpoint."""
    if config is None:
        return None
    return OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else dict(config)


class ConvNetClassifier(LightningModule):
    def __init__(
        self,
        net: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters({"net": plain(net), "optimizer": plain(optimizer), "scheduler": plain(scheduler),
                                   "class_names": None if class_names is None else [str(c) for c in class_names]})
        self.net = ConvNet(**self.hparams.net)
        num_classes = self.hparams.net.get("num_classes", 10)
        if class_names is not None and len(class_names) != num_classes:
            raise ConvlensError(f"{len(class_names)} class names for model.net.num_classes={num_classes}; "
                                "leave both to the data config")
        # Predictions are argmax indices, always valid: skip the input checks (a torch.unique per update).
        accuracy = {"num_classes": num_classes, "average": "micro", "validate_args": False}
        self.train_loss = MeanMetric(nan_strategy="disable")  # "warn"/"error" would read every loss on the host
        self.train_acc = MulticlassAccuracy(**accuracy)
        self.train_acc_since_check = MulticlassAccuracy(**accuracy)  # tutorial's train error
        self.val_acc = MulticlassAccuracy(**accuracy)
        self.test_acc = MulticlassAccuracy(**accuracy)
        self.val_acc_best = MaxMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        log_probs = self(x)
        return F.nll_loss(log_probs, y), log_probs.argmax(dim=1), y

    def on_train_start(self) -> None:
        # The sanity check ran validation on an untrained model; it must not count (val_acc_best skips it too,
        # and keeps what a resumed checkpoint brought).
        self.val_acc.reset()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Kept beside the weights, not in them, so checkpoints without it still load strictly.
        if self.val_acc_best.update_called:
            checkpoint["val_acc_best"] = self.val_acc_best.compute().cpu()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "val_acc_best" in checkpoint:  # a resumed run's best accuracy includes the one before the stop
            self.val_acc_best.update(checkpoint["val_acc_best"].to(self.device))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, preds, y = self._step(batch)
        # Metric updates only: no host sync. ``self.log`` is called only on the steps the logger writes, since
        # each call costs about 0.6 ms of bookkeeping on the CPU, a tenth of this model's step (README, Speed); the
        # epoch's loss and accuracy come from the metric objects in ``on_train_epoch_end``.
        self.train_loss.update(loss.detach(), weight=len(y))
        self.train_acc.update(preds, y)
        self.train_acc_since_check.update(preds, y)
        if self._logger_writes_this_step():
            self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(y))
        return loss

    def _logger_writes_this_step(self) -> bool:
        """Lightning's own rule (``log_every_n_steps``, every step under ``fast_dev_run``), for the current step."""
        every = self.trainer.log_every_n_steps
        return bool(self.trainer.fast_dev_run) or (every > 0 and (self.global_step + 1) % every == 0)

    def on_train_epoch_end(self) -> None:
        if not self.train_loss.update_called:  # resumed from a checkpoint written at the end of this epoch
            return
        # compute() reduces over DDP processes; sync_dist=True only tells Lightning the numbers are already equal.
        self.log_dict({"train/loss_epoch": self.train_loss.compute(), "train/acc": self.train_acc.compute()},
                      sync_dist=True)
        self.train_loss.reset()
        self.train_acc.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        _, preds, y = self._step(batch)
        self.val_acc.update(preds, y)

    def _log_accuracy(self, split: str, metric: MulticlassAccuracy, **log_options: Any) -> torch.Tensor:
        """Log ``<split>/acc`` and ``<split>/err`` (percent) over everything since the last reset, then reset."""
        acc = metric.compute()
        metric.reset()
        # compute() already reduced the counts over all DDP processes; sync_dist=True only averages equal
        # numbers, and tells Lightning so (it warns otherwise).
        self.log_dict({f"{split}/acc": acc, f"{split}/err": 100 * (1 - acc)}, sync_dist=True, **log_options)
        return acc

    def on_validation_epoch_end(self) -> None:
        acc = self._log_accuracy("val", self.val_acc, prog_bar=True)
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(acc)
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)
        if self.train_acc_since_check.update_called:
            self.log("train/err", 100 * (1 - self.train_acc_since_check.compute()), sync_dist=True)
            self.train_acc_since_check.reset()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        _, preds, y = self._step(batch)
        self.test_acc.update(preds, y)

    def on_test_epoch_end(self) -> None:
        self._log_accuracy("test", self.test_acc)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())  # configs are _partial_
        if self.hparams.scheduler is None:
            return {"optimizer": optimizer}
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
