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
from pytorch_lightning.utilities import rank_zero_info
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from convlens.errors import ConvlensError
from convlens.models.chunked_steps import AUTO, ChunkPlan, StepChunks, train_chunk
from convlens.models.convnet import ConvNet
from convlens.models.cuda_graph_step import GraphedStep


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
        steps_per_call: int | str = AUTO,
        cuda_graphs: bool = False,
    ) -> None:
        super().__init__()
        if steps_per_call != AUTO and (not isinstance(steps_per_call, int) or isinstance(steps_per_call, bool)
                                       or steps_per_call < 1):
            raise ConvlensError(f"model.steps_per_call={steps_per_call} must be auto or a whole number of optimizer "
                                "steps of at least 1 (1: Lightning's usual one step per call)")
        self.save_hyperparameters({"net": plain(net), "optimizer": plain(optimizer), "scheduler": plain(scheduler),
                                   "class_names": None if class_names is None else [str(c) for c in class_names],
                                   "steps_per_call": steps_per_call, "cuda_graphs": bool(cuda_graphs)})
        if cuda_graphs and steps_per_call == 1:
            raise ConvlensError("model.cuda_graphs=true replays steps inside a chunk; it needs model.steps_per_call "
                                "auto or above 1")
        # One step per call is Lightning's own loop; several are this module's (see chunked_steps).
        self.automatic_optimization = steps_per_call == 1
        self.chunk_plan: ChunkPlan | None = None  # set by StepChunks once the data is known
        self.graphed_step: GraphedStep | None = None  # made at the first full batch, when graphs can run here
        self.net = ConvNet(**self.hparams.net)
        # One blank image: Lightning's model summary runs it to count the network's FLOPs and show layer shapes.
        size = self.hparams.net.get("image_size", 28)
        self.example_input_array = torch.zeros(1, self.hparams.net.get("in_channels", 1), size, size)
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

    def loss_and_predictions(self, batch: tuple[torch.Tensor, torch.Tensor]
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        log_probs = self(x)
        return F.nll_loss(log_probs, y), log_probs.argmax(dim=1), y

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Kept beside the weights, not in them, so checkpoints without it still load strictly.
        if self.val_acc_best.update_called:
            checkpoint["val_acc_best"] = self.val_acc_best.compute().cpu()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "val_acc_best" in checkpoint:  # a resumed run's best accuracy includes the one before the stop
            self.val_acc_best.update(checkpoint["val_acc_best"].to(self.device))

    def configure_callbacks(self) -> list[StepChunks]:
        fitting = self.trainer.state.fn == TrainerFn.FITTING
        return [StepChunks(self.hparams.steps_per_call)] if fitting and not self.automatic_optimization else []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | dict[str, torch.Tensor]:
        if not self.automatic_optimization:  # a chunk: a list of batches, one optimizer step each
            return train_chunk(self, batch, batch_idx)
        loss = self.train_metrics_update(*self.loss_and_predictions(batch))
        if self._logger_writes_step(self.global_step):
            self.log("train/loss", loss, prog_bar=True, batch_size=len(batch[1]))
        return loss

    def optimizer_step_on(self, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """One step of the tutorial: forward, loss, backward, SGD update. Returns the detached loss."""
        loss = self.train_metrics_update(*self.loss_and_predictions((x, y)))
        optimizer.zero_grad()
        self.manual_backward(loss)  # through the strategy: under DDP it prepares this backward's all-reduce
        optimizer.step()
        return loss.detach()

    def on_train_start(self) -> None:
        self.val_acc.reset()  # the sanity check's validation must not count (val_acc_best skips it too)
        if self.hparams.cuda_graphs and not self.graphs_can_run():
            rank_zero_info(f"model.cuda_graphs=true needs one GPU and trainer.precision=32-true (here: "
                           f"{self.trainer.world_size} x {self.device.type}, {self.trainer.precision}); training "
                           "steps run eagerly")

    def graphs_can_run(self) -> bool:
        return self.device.type == "cuda" and self.trainer.precision == "32-true" and self.trainer.world_size == 1

    def train_metrics_update(self, loss: torch.Tensor, preds: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Metric updates only, no host sync; the epoch's loss and accuracy are logged in on_train_epoch_end.
        self.train_loss.update(loss.detach(), weight=len(y))
        self.train_acc.update(preds, y)
        self.train_acc_since_check.update(preds, y)
        return loss

    def _logger_writes_step(self, step: int) -> bool:
        """Lightning's own rule (``log_every_n_steps``, every step under ``fast_dev_run``) for the 0-based step."""
        every = self.trainer.log_every_n_steps
        return bool(self.trainer.fast_dev_run) or (every > 0 and (step + 1) % every == 0)

    def log_step_losses(self, first_step: int, losses: torch.Tensor) -> None:
        """Write a chunk's step losses at the steps Lightning would have written them, with one host read."""
        steps = [first_step + i for i in range(len(losses)) if self._logger_writes_step(first_step + i)]
        self.log("train/loss", losses[-1], prog_bar=True, logger=False)
        if not steps or not self.loggers:
            return
        values = losses[[step - first_step for step in steps]].tolist()
        for logger in self.loggers:
            for step, value in zip(steps, values):
                logger.log_metrics({"train/loss": value, "epoch": self.current_epoch}, step=step)

    def on_train_epoch_end(self) -> None:
        if not self.train_loss.update_called:  # resumed from a checkpoint written at the end of this epoch
            return
        # compute() reduces over DDP processes; sync_dist=True only tells Lightning the numbers are already equal.
        self.log_dict({"train/loss_epoch": self.train_loss.compute(), "train/acc": self.train_acc.compute()},
                      sync_dist=True)
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

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())  # configs are _partial_
        if self.hparams.scheduler is None:
            return {"optimizer": optimizer}
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
