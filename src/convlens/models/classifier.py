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
from pytorch_lightning.strategies import SingleDeviceStrategy
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_info
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from convlens.data.batch_augment import BatchAugment
from convlens.errors import ConvlensError
from convlens.models import cuda_graph_step
from convlens.models.chunked_steps import AUTO, ChunkPlan, StepChunks, train_chunk
from convlens.models.convnet import ConvNet
from convlens.models.cuda_graph_step import GraphedStep, optimizer_can_be_captured
from convlens.models.resume_position import Stepping, continue_in_new_calls, record_stepping
from convlens.models.schedules import changes_lr_every_step, check_schedule, lightning_schedulers


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
        steps_per_call: int | str = AUTO,
        cuda_graphs: bool = False,
        label_smoothing: float = 0.0,
        augment: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if steps_per_call != AUTO and (
            not isinstance(steps_per_call, int) or isinstance(steps_per_call, bool) or steps_per_call < 1
        ):
            raise ConvlensError(
                f"model.steps_per_call={steps_per_call} must be auto or a whole number of optimizer "
                "steps of at least 1 (1: Lightning's usual one step per call)"
            )
        self.save_hyperparameters(
            {
                "net": as_plain_dict(net),
                "optimizer": as_plain_dict(optimizer),
                "scheduler": as_plain_dict(scheduler),
                "class_names": None if class_names is None else [str(c) for c in class_names],
                "steps_per_call": steps_per_call,
                "cuda_graphs": bool(cuda_graphs),
                "label_smoothing": float(label_smoothing),
                "augment": as_plain_dict(augment),
            }
        )
        if cuda_graphs and steps_per_call == 1:
            raise ConvlensError(
                "model.cuda_graphs=true replays steps inside a chunk; it needs model.steps_per_call auto or above 1"
            )
        check_schedule(self.hparams.scheduler)
        if cuda_graphs and changes_lr_every_step(self.hparams.scheduler):
            raise ConvlensError(
                "model.cuda_graphs=true captures the step again whenever the learning rate changes, "
                "which this schedule does at every step; set model.cuda_graphs=false"
            )
        # Training batches only (training_step and chunked_steps.one_step); None draws no random numbers.
        self.augmentation = BatchAugment(**self.hparams.augment) if self.hparams.augment else None
        # One step per call is Lightning's own loop; several are this module's (see chunked_steps).
        self.automatic_optimization = steps_per_call == 1
        self.chunk_plan: ChunkPlan | None = None  # set by StepChunks once the data is known
        self.graphed_step: GraphedStep | None = None  # made at the first full batch, when graphs can run here
        self.graphs_run_here = False  # model.cuda_graphs and nothing here that stops them (on_train_start)
        self.backward_directly = False  # one device, no loss scaler: backward() without Lightning's hooks
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
        """How this fit cuts its epochs into calls: what a checkpoint's position in the epoch is counted in."""
        datamodule = self.trainer.datamodule
        batch_size = None if datamodule is None else datamodule.hparams.get("batch_size")
        if self.chunk_plan is not None:
            return Stepping(self.chunk_plan.steps_per_call, self.chunk_plan.steps_per_epoch, batch_size)
        batches = self.trainer.num_training_batches  # known once the loader is, after this resume's restore
        return Stepping(1, int(batches) if isinstance(batches, int) else None, batch_size)

    def configure_callbacks(self) -> list[StepChunks]:
        fitting = self.trainer.state.fn == TrainerFn.FITTING
        return [StepChunks(self.hparams.steps_per_call)] if fitting and not self.automatic_optimization else []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | dict[str, torch.Tensor]:
        if not self.automatic_optimization:  # a chunk: a list of batches, one optimizer step each
            return train_chunk(self, batch, batch_idx)
        x, y = batch
        loss = self.train_metrics_update(*self.loss_and_predictions((self.augmented(x), y)))
        if self._logger_writes_step(self.global_step):
            self.log("train/loss", loss, prog_bar=True, batch_size=len(batch[1]))
        return loss

    def optimizer_step_on(self, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """One step of the tutorial: forward, loss, backward, SGD update. Returns the detached loss."""
        loss = self.train_metrics_update(*self.loss_and_predictions((x, y)))
        # A captured step writes into these very gradient tensors: while there is one, they stay.
        optimizer.zero_grad(set_to_none=self.graphed_step is None)
        if self.backward_directly:
            loss.backward()
        else:  # through the strategy: under DDP it prepares this backward's all-reduce
            self.manual_backward(loss)
        optimizer.step()
        return loss.detach()

    def on_validation_model_zero_grad(self) -> None:
        # Lightning frees the gradients before each validation check; a captured step writes into them: keep them.
        self.zero_grad(set_to_none=self.graphed_step is None)

    def on_train_start(self) -> None:
        self.val_acc.reset()  # the sanity check's validation must not count (val_acc_best skips it too)
        self.graphed_step = None  # a graph from an earlier fit would replay into tensors that may be gone
        self.backward_directly = (
            isinstance(self.trainer.strategy, SingleDeviceStrategy)
            and getattr(self.trainer.precision_plugin, "scaler", None) is None
        )
        obstacle = self.what_stops_graphs() if self.hparams.cuda_graphs else None
        self.graphs_run_here = bool(self.hparams.cuda_graphs) and obstacle is None
        if obstacle:
            rank_zero_info(f"model.cuda_graphs=true needs {obstacle}; training steps run eagerly")

    def what_stops_graphs(self) -> str | None:
        """What keeps this fit from replaying its steps from a CUDA graph, in words; None if nothing does."""
        trainer = self.trainer
        if (
            self.device.type != cuda_graph_step.GRAPH_DEVICE
            or not isinstance(trainer.strategy, SingleDeviceStrategy)
            or trainer.precision != "32-true"
        ):
            return (
                f"one GPU without DDP and trainer.precision=32-true (here: {trainer.world_size} x "
                f"{self.device.type}, {type(trainer.strategy).__name__}, {trainer.precision})"
            )
        optimizer = self.optimizers().optimizer
        if not optimizer_can_be_captured(optimizer):
            momentum = optimizer.defaults.get("momentum", "none")
            return f"torch.optim.SGD with momentum above 0 (here: {type(optimizer).__name__}, momentum {momentum})"
        return None

    def train_metrics_update(self, loss: torch.Tensor, preds: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Metric updates only, no host sync; the epoch's loss and accuracy are logged in on_train_epoch_end.
        # The loss once per image, so a short batch weighs as many images as it has (MeanMetric drops weight=
        # under nan_strategy="disable", and would copy a Python int to the device, a host sync, every step).
        self.train_loss.update(loss.detach().expand(len(y)))
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
            for step, value in zip(steps, values, strict=True):
                logger.log_metrics({"train/loss": value, "epoch": self.current_epoch}, step=step)

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

    def configure_optimizers(self) -> dict[str, Any] | tuple[list[torch.optim.Optimizer], list[dict[str, Any]]]:
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())  # configs are _partial_
        schedulers = lightning_schedulers(self.hparams.scheduler, optimizer, self)
        if not schedulers:
            return {"optimizer": optimizer}
        if len(schedulers) == 1:
            return {"optimizer": optimizer, "lr_scheduler": schedulers[0]}
        return [optimizer], schedulers
