"""Lightning's private names that several steps per call need beyond ``convlens.lightning_internals``'s.

A chunk is many optimizer steps inside one call of Lightning's manual loop; these move Lightning's counters as
its own loop would have moved them step by step. ``check_chunk_internals`` finds a missing one when the fit
is set up, in the same one line as the project's other private names.
"""

from __future__ import annotations

import torch
from pytorch_lightning import Trainer
from pytorch_lightning.core.optimizer import LightningOptimizer

from convlens.lightning_internals import LOGGING_STEP, missing_names, refuse_missing


def check_chunk_internals(trainer: Trainer) -> None:
    """Every private name below exists in the installed Lightning; else one line naming it and the version."""
    optimizer = LightningOptimizer(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
    epoch_loop = trainer.fit_loop.epoch_loop
    refuse_missing(
        missing_names(
            [
                ("trainer.fit_loop.epoch_loop", epoch_loop, LOGGING_STEP),
                ("trainer.fit_loop.epoch_loop", epoch_loop, "_skip_next_val"),
                ("LightningOptimizer", optimizer, "_on_before_step"),
                ("LightningOptimizer", optimizer, "_on_after_step"),
            ]
        )
    )


def skip_next_validation(trainer: Trainer) -> None:
    """No validation after the training batch now ending, although its interval says so."""
    trainer.fit_loop.epoch_loop._skip_next_val = True


def add_logging_steps(trainer: Trainer, steps: int) -> None:
    """Move the step axis of logged scalars on by ``steps`` beyond Lightning's one per call."""
    loop = trainer.fit_loop.epoch_loop
    setattr(loop, LOGGING_STEP, getattr(loop, LOGGING_STEP) + steps)


def before_optimizer_step(optimizer: LightningOptimizer) -> None:
    """What Lightning's manual loop does before an optimizer step (the step counters' ``ready``)."""
    optimizer._on_before_step()


def after_optimizer_step(optimizer: LightningOptimizer) -> None:
    """What Lightning's manual loop does after an optimizer step (``global_step`` advances)."""
    optimizer._on_after_step()
