"""Many optimizer steps per ``training_step`` call, so Lightning's per-call bookkeeping is paid once per chunk.

A chunk is up to ``steps_per_call`` consecutive training batches, handed over at once by the DataModule (see
``data.step_batches``). Each batch in it is exactly one optimizer step of the tutorial's kind. Everything a
user sees still counts optimizer steps: ``trainer.global_step``, the TensorBoard step axis, validation every
``trainer.val_check_interval`` steps, ``limit_train_batches``, ``max_steps`` and ``log_every_n_steps``.
Lightning itself counts one batch per call, so ``StepChunks`` translates the trainer's step-based settings into
chunks once the data is known, and ``ChunkPlan`` says which chunk ends where.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.utilities import rank_zero_warn

from convlens.errors import ConvlensError
from convlens.lightning_internals import (
    add_logging_steps,
    after_optimizer_step,
    before_optimizer_step,
    every_n_train_steps,
    skip_next_validation,
)
from convlens.models.cuda_graph_step import GraphedStep

if TYPE_CHECKING:
    from convlens.models.classifier import ConvNetClassifier

AUTO = "auto"


@dataclass(frozen=True)
class ChunkPlan:
    """How one epoch of ``steps_per_epoch`` optimizer steps is cut into calls of ``steps_per_call`` steps."""

    steps_per_call: int
    steps_per_epoch: int
    val_every_steps: int

    @classmethod
    def for_trainer(cls, trainer: Trainer, steps: int, steps_per_call: int | str) -> ChunkPlan:
        """``steps``: the epoch's optimizer steps, cut by ``trainer.limit_train_batches``."""
        if trainer.fast_dev_run:  # Lightning already counts its few batches; one step each keeps them steps
            return cls(1, steps, 1)
        interval = trainer.val_check_interval
        if not isinstance(interval, (int, float)) or trainer.check_val_every_n_epoch is None:
            raise ConvlensError(
                f"trainer.val_check_interval={interval} with check_val_every_n_epoch="
                f"{trainer.check_val_every_n_epoch} cannot be cut into chunks of steps; use a number of steps "
                "or a fraction of an epoch with check_val_every_n_epoch=1, or set model.steps_per_call=1"
            )
        # The interval fits the epoch: callbacks.interval_check said so before this runs.
        every = max(1, int(steps * interval)) if isinstance(interval, float) else int(interval)
        # Calls end where validation and step checkpoints fall, so both happen at the same steps as without chunks.
        boundaries = [every, *checkpoint_intervals(trainer)]
        size = math.gcd(*boundaries) if steps_per_call == AUTO else int(steps_per_call)
        if any(boundary % size for boundary in boundaries):
            raise ConvlensError(
                f"model.steps_per_call={steps_per_call} must divide the validation interval ({every} steps) and "
                f"every step-checkpoint interval ({', '.join(map(str, boundaries[1:])) or 'none'}), so that "
                f"both fall between calls; use model.steps_per_call=auto (= {math.gcd(*boundaries)})"
            )
        return cls(size, steps, every)

    @property
    def calls_per_epoch(self) -> int:
        return math.ceil(self.steps_per_epoch / self.steps_per_call)

    def steps_in_call(self, call_index: int) -> int:
        """The last call of an epoch may be short: the steps left, not a whole chunk."""
        return min(self.steps_per_call, self.steps_per_epoch - call_index * self.steps_per_call)

    def validates_after(self, call_index: int) -> bool:
        """Validation follows only a call that ends on a multiple of the interval, as with one step per call."""
        done = call_index * self.steps_per_call + self.steps_in_call(call_index)
        return done % self.val_every_steps == 0


def checkpoint_intervals(trainer: Trainer) -> list[int]:
    """``every_n_train_steps`` of each step-checkpointing ``ModelCheckpoint``."""
    return [
        every_n_train_steps(callback) for callback in trainer.checkpoint_callbacks if every_n_train_steps(callback) > 0
    ]


class StepChunks(Callback):
    """Makes the trainer count calls where it counted steps, once the DataModule knows how long an epoch is.

    Lightning validates, limits and checks its interval in batches; here a batch is a chunk, so the trainer's
    ``limit_train_batches`` and ``val_check_interval`` are rewritten in chunks before the fit loop reads them,
    and the DataModule is told how many batches to hand over per call.
    """

    def __init__(self, steps_per_call: int | str) -> None:
        self.steps_per_call = steps_per_call

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "train_steps_per_epoch"):
            raise ConvlensError(
                f"model.steps_per_call={self.steps_per_call} needs a convlens DataModule that "
                "hands over several batches per call; set model.steps_per_call=1"
            )
        if str(trainer.precision).startswith("16"):
            raise ConvlensError(
                f"trainer.precision={trainer.precision} unscales gradients in Lightning's per-step optimizer step, "
                "which several steps per call leave out; use trainer.precision=bf16-mixed, or model.steps_per_call=1"
            )
        steps = datamodule.train_steps_per_epoch(trainer.limit_train_batches)
        plan = ChunkPlan.for_trainer(trainer, steps, self.steps_per_call)
        trainer.limit_train_batches = plan.calls_per_epoch
        trainer.val_check_interval = plan.val_every_steps // plan.steps_per_call
        datamodule.steps_per_call = plan.steps_per_call
        pl_module.chunk_plan = plan
        # Lightning compares log_every_n_steps with its count of calls; the comparison that holds is in steps.
        warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the logging")
        # ModelCheckpoint asks manual-optimization modules for the weights before the step; the weights after
        # it, which it saves, are the ones a resume needs.
        warnings.filterwarnings("ignore", message=r"Using ModelCheckpoint with manual optimization")
        if trainer.log_every_n_steps > plan.steps_per_epoch and not trainer.fast_dev_run:
            rank_zero_warn(
                f"an epoch has {plan.steps_per_epoch} training steps, fewer than "
                f"trainer.log_every_n_steps={trainer.log_every_n_steps}: the step loss is written less "
                "than once an epoch; lower trainer.log_every_n_steps to see it"
            )


def train_chunk(
    module: ConvNetClassifier, batches: list[tuple[torch.Tensor, torch.Tensor]], batch_idx: int
) -> dict[str, torch.Tensor]:
    """The chunk's optimizer steps, one per batch; returns their mean loss and each step's (the finite-loss
    check names the first bad step)."""
    trainer, plan = module.trainer, module.chunk_plan
    assert plan is not None  # StepChunks.setup planned the chunks before fit called the first training step
    count = plan.steps_in_call(batch_idx)
    if trainer.max_steps >= 0:
        count = min(count, trainer.max_steps - trainer.global_step)
    optimizer = module.optimizers()
    first_step = trainer.global_step
    first_in_epoch = batch_idx * plan.steps_per_call
    losses = []
    for index, (x, y) in enumerate(batches[:count]):
        losses.append(one_step(module, optimizer, x, y))
        step_schedulers(module, "step", first_in_epoch + index + 1)
    chunk_losses = torch.stack(losses)
    module.log_step_losses(first_step, chunk_losses)
    # Lightning adds one step for the call after it returns; the TensorBoard axis counts every step in it.
    add_logging_steps(trainer, count - 1)
    if not plan.validates_after(batch_idx):
        # A short last call ending off the interval: with one step per call no validation would follow it.
        skip_next_validation(trainer)
    if batch_idx + 1 == trainer.num_training_batches:
        step_schedulers(module, "epoch", trainer.current_epoch + 1)
    return {"loss": chunk_losses.mean(), "step_losses": chunk_losses}


def one_step(
    module: ConvNetClassifier, optimizer: LightningOptimizer, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """One optimizer step on the plain torch optimizer, replayed from a CUDA graph where one can run.

    Lightning's per-step optimizer hooks (on_before_optimizer_step and its precision plugin's step) are what a
    chunk leaves out, and on one device without a loss scaler its backward hooks too (``optimizer_step_on``);
    its step counters still advance, through the callables its manual loop gives each LightningOptimizer for
    exactly that. The batch is augmented here, step by step, so that random numbers are drawn in the order of one
    step per call: this step's augmentation, then its dropout.
    """
    before_optimizer_step(optimizer)
    x = module.augmented(x)
    graphed = module.graphed_step
    if graphed is None and module.graphs_run_here:
        graphed = module.graphed_step = GraphedStep(module, optimizer.optimizer, x, y)
    # The graph is captured once the optimizer state exists, so the first step runs eagerly.
    if graphed is not None and graphed.fits(x) and optimizer.optimizer.state:
        loss, preds = graphed.step(x, y)
        module.train_metrics_update(loss, preds, y)
        loss = loss.detach().clone()
    else:
        loss = module.optimizer_step_on(x, y, optimizer.optimizer)
    after_optimizer_step(optimizer)
    return loss


def step_schedulers(module: LightningModule, interval: str, count: int) -> None:
    """Where and as Lightning's own loop steps them (it does not under manual optimization): ``step`` schedulers
    after each optimizer step (``count``: steps so far in this epoch), ``epoch`` ones after the epoch's last batch
    (``count``: epochs so far, this one included), each at its ``frequency``, before any callback saves."""
    for config in module.trainer.lr_scheduler_configs:
        if config.interval == interval and count % config.frequency == 0:
            config.scheduler.step()
