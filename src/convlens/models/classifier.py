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
from pytorch_lightning.trainer.states import TrainerFn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from convlens.data.batch_augment import BatchAugment
from convlens.errors import ConvlensError
from convlens.models.convnet import ConvNet
from convlens.models.resume_position import Stepping, continue_in_new_calls, record_stepping
from convlens.models.schedules import check_schedule, known_length, lightning_schedulers


def as_plain_dict(config: Mapping | None) -> dict | None:
    """A Hydra/OmegaConf node as a plain dict, safe to pickle into a checkpoint."""
    if config is None:
        return None
    if not isinstance(config, DictConfig):
        return dict(config)
    container = OmegaConf.to_container(config, resolve=True)
    assert isinstance(container, dict)  # a DictConfig's container is a dict
    return container


class ConvNetClassifier(LightningModule):
    def __init__(
        self,
        net: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        label_smoothing: float = 0.0,
        augment: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            {
                "net": as_plain_dict(net),
                "optimizer": as_plain_dict(optimizer),
                "scheduler": as_plain_dict(scheduler),
                "class_names": None if class_names is None else [str(c) for c in class_names],
                "label_smoothing": float(label_smoothing),
                "augment": as_plain_dict(augment),
            }
        )
        check_schedule(self.hparams.scheduler)
        # Training batches only; None draws no random numbers.
        self.augmentation = BatchAugment(**self.hparams.augment) if self.hparams.augment else None
        self.net = ConvNet(**self.hparams.net)
        # One blank image: Lightning's model summary runs it to count the network's FLOPs and show layer shapes.
        size = self.hparams.net.get("image_size", 28)
        self.example_input_array = torch.zeros(1, self.hparams.net.get("in_channels", 1), size, size)
        num_classes = self.hparams.net.get("num_classes", 10)
        if class_names is not None and len(class_names) != num_classes:
            raise ConvlensError(
                f"{len(class_names)} class names for model.net.num_classes={num_classes}; leave both to the data config"
            )
        # Predictions are argmax indices, always valid: skip the input checks (a torch.unique per update).
        accuracy = {"num_classes": num_classes, "average": "micro", "validate_args": False}
        self.train_loss = MeanMetric(nan_strategy="disable")  # "warn"/"error" would read every loss on the host
        self.train_acc = MulticlassAccuracy(**accuracy)
        self.train_acc_since_check = MulticlassAccuracy(**accuracy)  # tutorial's train error
        self.val_acc = MulticlassAccuracy(**accuracy)
        self.test_acc = MulticlassAccuracy(**accuracy)
        self.val_acc_best = MaxMetric()
        # The last finished epoch's train/loss_epoch and train/acc, carried in checkpoints: a resumed run that has
        # no epoch left to finish still reports them.
        self.last_epoch_training: dict[str, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss_and_predictions(
        self, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        log_probs = self(x)
        return self.loss(log_probs, y), log_probs.argmax(dim=1), y

    def loss(self, log_probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The tutorial's negative log-likelihood, or with ``label_smoothing`` the smoothed cross-entropy.

        ``F.nll_loss`` has no smoothing; ``F.cross_entropy`` takes logits and applies log_softmax first, which
        changes nothing in log-probabilities (log_softmax is idempotent), so on them it is the exact smoothed
        loss. It is used only when smoothing is on: the extra log_softmax would change the last bits of today's.
        """
        smoothing = self.hparams.get("label_smoothing", 0.0)
        if not smoothing:
            return F.nll_loss(log_probs, y)
        return F.cross_entropy(log_probs, y, label_smoothing=smoothing)

    def augmented(self, x: torch.Tensor) -> torch.Tensor:
        """A training batch as the step sees it: transformed at random when ``augment`` is on."""
        return x if self.augmentation is None else self.augmentation(x)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Kept beside the weights, not in them, so checkpoints without it still load strictly.
        if self.val_acc_best.update_called:
            checkpoint["val_acc_best"] = self.val_acc_best.compute().cpu()
        checkpoint["last_epoch_training"] = self.last_epoch_training
        if self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING:
            record_stepping(checkpoint, self.stepping())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "val_acc_best" in checkpoint:  # a resumed run's best accuracy includes the one before the stop
            self.val_acc_best.update(checkpoint["val_acc_best"].to(self.device))
        self.last_epoch_training = dict(checkpoint.get("last_epoch_training", {}))
        if self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING:  # a resume, not a reload
            continue_in_new_calls(checkpoint, self.stepping())

    def stepping(self) -> Stepping:
        """How this fit cuts its epochs into calls (here one optimizer step each): what a checkpoint's position in
        the epoch is counted in."""
        datamodule = self.trainer.datamodule
        batch_size = None if datamodule is None else datamodule.hparams.get("batch_size")
        batches = self.trainer.num_training_batches  # known once the loader is, after this resume's restore
        return Stepping(1, int(batches) if isinstance(batches, int) else None, batch_size)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.train_metrics_update(*self.loss_and_predictions((self.augmented(x), y)))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(y))
        return loss

    def on_train_start(self) -> None:
        self.val_acc.reset()  # the sanity check's validation must not count (val_acc_best skips it too)

    def train_metrics_update(self, loss: torch.Tensor, preds: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Metric updates only, no host sync; the epoch's loss and accuracy are logged in on_train_epoch_end.
        # The loss once per image, so a short batch weighs as many images as it has (MeanMetric drops weight=
        # under nan_strategy="disable", and would copy a Python int to the device, a host sync, every step).
        self.train_loss.update(loss.detach().expand(len(y)))
        self.train_acc.update(preds, y)
        self.train_acc_since_check.update(preds, y)
        return loss

    def on_train_epoch_end(self) -> None:
        if not self.train_loss.update_called:  # resumed from a checkpoint written at the end of this epoch
            return
        # compute() reduces over DDP processes; sync_dist=True only tells Lightning the numbers are already equal.
        epoch = {"train/loss_epoch": self.train_loss.compute(), "train/acc": self.train_acc.compute()}
        self.log_dict(epoch, sync_dist=True)
        self.last_epoch_training = {key: float(value) for key, value in epoch.items()}
        self.train_loss.reset()
        self.train_acc.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        _, preds, y = self.loss_and_predictions(batch)
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
        _, preds, y = self.loss_and_predictions(batch)
        self.test_acc.update(preds, y)

    def on_test_epoch_end(self) -> None:
        self._log_accuracy("test", self.test_acc)

    def total_optimizer_steps(self) -> int:
        """The optimizer steps this fit will take, by Lightning's own estimate."""
        return known_length(self.trainer.estimated_stepping_batches)

    def configure_optimizers(self) -> dict[str, Any] | tuple[list[torch.optim.Optimizer], list[dict[str, Any]]]:
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())  # configs are _partial_
        schedulers = lightning_schedulers(self.hparams.scheduler, optimizer, self.total_optimizer_steps)
        if not schedulers:
            return {"optimizer": optimizer}
        if len(schedulers) == 1:
            return {"optimizer": optimizer, "lr_scheduler": schedulers[0]}
        return [optimizer], schedulers
