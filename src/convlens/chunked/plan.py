"""How an epoch of optimizer steps is cut into calls of several steps each.

A chunk is up to ``steps_per_call`` consecutive training batches, handed over at once by the training loader
(see ``step_batches``). Each batch in it is exactly one optimizer step of the tutorial's kind. Everything a
user sees still counts optimizer steps: ``trainer.global_step``, the TensorBoard step axis, validation every
``trainer.val_check_interval`` steps, ``limit_train_batches``, ``max_steps`` and ``log_every_n_steps``.
Lightning itself counts one batch per call, so ``StepChunks`` translates the trainer's step-based settings into
chunks once the data is known, and ``ChunkPlan`` says which chunk ends where.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pytorch_lightning import Trainer

from convlens.errors import ConvlensError
from convlens.lightning_internals import every_n_train_steps

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
