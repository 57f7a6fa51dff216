"""Test-only: a callback with which a training process signals itself at a chosen step, or during a validation.

A test that sleeps before sending a signal only guesses where it lands; this one lands exactly there, every time.
"""

from __future__ import annotations

import os
import signal

from pytorch_lightning import Callback, LightningModule, Trainer


class SignalAt(Callback):
    """Send ``signal_name`` to this process ``times`` times in a row, once the step count reaches ``step``: after
    that training call, or (``during_validation``) in the middle of the first validation from then on."""

    def __init__(self, signal_name: str, step: int, during_validation: bool = False, times: int = 1) -> None:
        self.signum = signal.Signals[signal_name]
        self.step, self.during_validation, self.times = step, during_validation, times
        self.sent = False

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        if not self.during_validation:
            self.send(trainer)

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        if self.during_validation and not trainer.sanity_checking:
            self.send(trainer)

    def send(self, trainer: Trainer) -> None:
        if self.sent or trainer.global_step < self.step:
            return
        self.sent = True
        for _ in range(self.times):
            os.kill(os.getpid(), self.signum)


def signal_at(signal_name: str, step: int, during_validation: bool = False, times: int = 1) -> list[str]:
    """The overrides that add ``SignalAt`` to a run of src/train.py (tests/ must be on its PYTHONPATH)."""
    return [
        f"+callbacks.signal_at._target_={__name__}.SignalAt",
        f"+callbacks.signal_at.signal_name={signal_name}",
        f"+callbacks.signal_at.step={step}",
        f"+callbacks.signal_at.during_validation={during_validation}",
        f"+callbacks.signal_at.times={times}",
    ]
