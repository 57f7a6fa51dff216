"""Ctrl-C or SIGTERM in the middle of an epoch: save a checkpoint a resume continues exactly from, then exit."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.utilities.exceptions import SIGTERMException

from convlens.lightning_internals import set_stop_flag
from convlens.startup.run_log import log
from convlens.startup.run_task import shell_override

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal(Callback):
    """Stop between two training batches on SIGINT or SIGTERM, write ``last.ckpt``, exit with 128 + the signal.

    Lightning stops on SIGTERM by itself, but possibly in the middle of a validation, whose partial accuracy a
    resume cannot rebuild, and on Ctrl-C it saves nothing. Here both signals raise Lightning's SIGTERM flag,
    but it is lowered while a validation runs and raised again when it ends, so Lightning stops at one of its
    between-batches checks. The checkpoint then holds the loops' progress, the training loader's position and
    the random state. A second Ctrl-C stops at once, saving nothing.
    """

    def __init__(self, filename: str = "last.ckpt") -> None:
        self.filename = filename
        self.received: int | None = None
        self._trainer: Trainer | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # After Lightning installed its own SIGTERM handler (and after the sanity check): ours replaces it.
        if threading.current_thread() is not threading.main_thread():
            return
        self._trainer, self.received = trainer, None
        self._previous = {signum: signal.signal(signum, self._on_signal) for signum in SIGNALS}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: Lightning's immediate shutdown
        self.received = signum
        line = (
            f"{signal.Signals(signum).name}: saving a checkpoint once the steps under way end, then stopping "
            "(Ctrl-C again: stop now, saving nothing)"
        )
        sys.stderr.write(f"\n{line}\n")
        log.warning(line)
        if self._trainer is not None and not self._trainer.validating:
            set_stop_flag(self._trainer, True)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.received is not None and not trainer.sanity_checking:
            set_stop_flag(trainer, False)  # let this validation finish

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.received is not None and not trainer.sanity_checking:
            set_stop_flag(trainer, True)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore_handlers()
        if self.received is None or not isinstance(exception, SIGTERMException):
            return
        path = self.checkpoint_path(trainer)
        trainer.save_checkpoint(path, weights_only=False)  # everything a resume needs
        name = signal.Signals(self.received).name
        # ckpt_path=last looks only under logs/train/runs; the path itself resumes wherever hydra.run.dir put it
        line = (
            f"{name}: stopped at step {trainer.global_step} (epoch {trainer.current_epoch}) and saved {path}; "
            f"resume with {shell_override('ckpt_path', path.resolve())}"
        )
        sys.stderr.write(line + "\n")
        log.warning(line)
        exception.code = 128 + self.received  # the shell's convention for a run ended by a signal

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        self._trainer = None

    def checkpoint_path(self, trainer: Trainer) -> Path:
        callback = trainer.checkpoint_callback
        directory = getattr(callback, "dirpath", None) or Path(trainer.default_root_dir) / "checkpoints"
        return Path(directory) / self.filename
