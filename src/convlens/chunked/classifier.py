"""``ConvNetClassifier`` taking many optimizer steps per ``training_step`` call.

Lightning's bookkeeping around each call (hooks, logging, progress, the checks between batches) costs about as
much as one step of this tiny network on a CPU, so paying it once per chunk of steps makes training faster
(docs/speed.md). Each batch of a chunk is still exactly one tutorial step, in the same order, with the same
random numbers, and every count a user sees is in optimizer steps (``plan``). One step per call
(``steps_per_call: 1``) is Lightning's own loop, the parent class's.
"""

from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.strategies import SingleDeviceStrategy
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_info

from convlens.chunked import cuda_graph_step
from convlens.chunked.cuda_graph_step import GraphedStep, optimizer_can_be_captured
from convlens.chunked.lightning_internals import (
    add_logging_steps,
    after_optimizer_step,
    before_optimizer_step,
    skip_next_validation,
)
from convlens.chunked.plan import AUTO, ChunkPlan
from convlens.chunked.step_chunks import StepChunks
from convlens.errors import ConvlensError
from convlens.models.classifier import ConvNetClassifier
from convlens.models.resume_position import Stepping
from convlens.models.schedules import changes_lr_every_step, known_length


class ChunkedConvNetClassifier(ConvNetClassifier):
    def __init__(self, steps_per_call: int | str = AUTO, cuda_graphs: bool = False, **classifier: Any) -> None:
        super().__init__(**classifier)
        if steps_per_call != AUTO and (
            not isinstance(steps_per_call, int) or isinstance(steps_per_call, bool) or steps_per_call < 1
        ):
            raise ConvlensError(
                f"model.steps_per_call={steps_per_call} must be auto or a whole number of optimizer "
                "steps of at least 1 (1: Lightning's usual one step per call)"
            )
        if cuda_graphs and steps_per_call == 1:
            raise ConvlensError(
                "model.cuda_graphs=true replays steps inside a chunk; it needs model.steps_per_call auto or above 1"
            )
        if cuda_graphs and changes_lr_every_step(self.hparams.scheduler):
            raise ConvlensError(
                "model.cuda_graphs=true captures the step again whenever the learning rate changes, "
                "which this schedule does at every step; set model.cuda_graphs=false"
            )
        # Saved with the parent's, so a resume cuts its calls as configured; a plain ConvNetClassifier ignores them.
        self.save_hyperparameters({**self.hparams, "steps_per_call": steps_per_call, "cuda_graphs": bool(cuda_graphs)})
        self.automatic_optimization = steps_per_call == 1  # one step per call is Lightning's own loop
        self.chunk_plan: ChunkPlan | None = None  # set by StepChunks once the data is known
        self.graphed_step: GraphedStep | None = None  # made at the first full batch, when graphs can run here
        self.graphs_run_here = False  # model.cuda_graphs and nothing here that stops them (on_train_start)
        self.backward_directly = False  # one device, no loss scaler: backward() without Lightning's hooks

    def configure_callbacks(self) -> list[StepChunks]:
        fitting = self.trainer.state.fn == TrainerFn.FITTING
        return [StepChunks(self.hparams.steps_per_call)] if fitting and not self.automatic_optimization else []

    def stepping(self) -> Stepping:
        if self.chunk_plan is None:
            return super().stepping()
        return Stepping(self.chunk_plan.steps_per_call, self.chunk_plan.steps_per_epoch, super().stepping().batch_size)

    def total_optimizer_steps(self) -> int:
        """Lightning's estimate counts calls; the plan knows the steps in them."""
        trainer, plan = self.trainer, self.chunk_plan
        if plan is None:
            return super().total_optimizer_steps()
        total = plan.steps_per_epoch * trainer.max_epochs if trainer.max_epochs not in (None, -1) else float("inf")
        if trainer.max_steps >= 0:
            total = min(total, trainer.max_steps)
        return known_length(total)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.automatic_optimization:
            return super().training_step(batch, batch_idx)
        return self.train_chunk(batch, batch_idx)

    def train_chunk(self, batches: list[tuple[torch.Tensor, torch.Tensor]], batch_idx: int) -> dict[str, torch.Tensor]:
        """The chunk's optimizer steps, one per batch; returns their mean loss and each step's (the finite-loss
        check names the first bad step)."""
        trainer, plan = self.trainer, self.chunk_plan
        assert plan is not None  # StepChunks.setup planned the chunks before fit called the first training step
        count = plan.steps_in_call(batch_idx)
        if trainer.max_steps >= 0:
            count = min(count, trainer.max_steps - trainer.global_step)
        optimizer = self.optimizers()
        first_step = trainer.global_step
        first_in_epoch = batch_idx * plan.steps_per_call
        losses = []
        for index, (x, y) in enumerate(batches[:count]):
            losses.append(self.one_step(optimizer, x, y))
            self.step_schedulers("step", first_in_epoch + index + 1)
        chunk_losses = torch.stack(losses)
        self.log_step_losses(first_step, chunk_losses)
        # Lightning adds one step for the call after it returns; the TensorBoard axis counts every step in it.
        add_logging_steps(trainer, count - 1)
        if not plan.validates_after(batch_idx):
            # A short last call ending off the interval: with one step per call no validation would follow it.
            skip_next_validation(trainer)
        if batch_idx + 1 == trainer.num_training_batches:
            self.step_schedulers("epoch", trainer.current_epoch + 1)
        return {"loss": chunk_losses.mean(), "step_losses": chunk_losses}

    def one_step(self, optimizer: LightningOptimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimizer step on the plain torch optimizer, replayed from a CUDA graph where one can run.

        Lightning's per-step optimizer hooks (on_before_optimizer_step and its precision plugin's step) are what
        a chunk leaves out, and on one device without a loss scaler its backward hooks too (``optimizer_step_on``);
        its step counters still advance, through the callables its manual loop gives each LightningOptimizer for
        exactly that. The batch is augmented here, step by step, so that random numbers are drawn in the order of
        one step per call: this step's augmentation, then its dropout.
        """
        before_optimizer_step(optimizer)
        x = self.augmented(x)
        graphed = self.graphed_step
        if graphed is None and self.graphs_run_here:
            graphed = self.graphed_step = GraphedStep(self, optimizer.optimizer, x, y)
        # The graph is captured once the optimizer state exists, so the first step runs eagerly.
        if graphed is not None and graphed.fits(x) and optimizer.optimizer.state:
            loss, preds = graphed.step(x, y)
            self.train_metrics_update(loss, preds, y)
            loss = loss.detach().clone()
        else:
            loss = self.optimizer_step_on(x, y, optimizer.optimizer)
        after_optimizer_step(optimizer)
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

    def step_schedulers(self, interval: str, count: int) -> None:
        """Where and as Lightning's own loop steps them (it does not under manual optimization): ``step``
        schedulers after each optimizer step (``count``: steps so far in this epoch), ``epoch`` ones after the
        epoch's last batch (``count``: epochs so far, this one included), each at its ``frequency``, before any
        callback saves."""
        for config in self.trainer.lr_scheduler_configs:
            if config.interval == interval and count % config.frequency == 0:
                config.scheduler.step()

    def logger_writes_step(self, step: int) -> bool:
        """Lightning's own rule (``log_every_n_steps``, every step under ``fast_dev_run``) for the 0-based step."""
        every = self.trainer.log_every_n_steps
        return bool(self.trainer.fast_dev_run) or (every > 0 and (step + 1) % every == 0)

    def log_step_losses(self, first_step: int, losses: torch.Tensor) -> None:
        """Write a chunk's step losses at the steps Lightning would have written them, with one host read."""
        steps = [first_step + i for i in range(len(losses)) if self.logger_writes_step(first_step + i)]
        self.log("train/loss", losses[-1], prog_bar=True, logger=False)
        if not steps or not self.loggers:
            return
        values = losses[[step - first_step for step in steps]].tolist()
        for logger in self.loggers:
            for step, value in zip(steps, values, strict=True):
                logger.log_metrics({"train/loss": value, "epoch": self.current_epoch}, step=step)

    def on_validation_model_zero_grad(self) -> None:
        # Lightning frees the gradients before each validation check; a captured step writes into them: keep them.
        self.zero_grad(set_to_none=self.graphed_step is None)

    def on_train_start(self) -> None:
        super().on_train_start()
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
