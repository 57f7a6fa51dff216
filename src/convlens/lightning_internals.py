"""Lightning's private names that convlens relies on, each reached through one function here.

Lightning keeps these internal, so an upgrade may rename them; those only several steps per call need are in
``chunked/lightning_internals.py``, checked the same way. reaching them from one place keeps that risk
in sight (``docs/testing.md`` lists why each is needed), and ``check_lightning_internals`` finds a missing one
when the trainer is built, in one line, before anything runs. ``pyproject.toml`` bounds pytorch-lightning
below the next minor version, not yet tested.
"""

from __future__ import annotations

import importlib
from functools import reduce
from typing import Any

import pytorch_lightning
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import ModelCheckpoint, RichProgressBar

from convlens.errors import ConvlensError

WRITTEN_FOR = "2.6.6"  # the pytorch-lightning these names were read from
LOGGING_STEP = "_batches_that_stepped"  # the fit loop's count of logging steps, and its key in a checkpoint
SUBPROCESS_LAUNCHER = "pytorch_lightning.strategies.launchers.subprocess_script._SubprocessScriptLauncher"


def check_lightning_internals(trainer: Trainer) -> None:
    """Every private name below exists in the installed Lightning; else one line naming it and the version."""
    epoch_loop = trainer.fit_loop.epoch_loop
    places: list[tuple[str, Any, str]] = [
        ("trainer", trainer, "_signal_connector.received_sigterm"),
        ("trainer.fit_loop", trainer.fit_loop, "_data_fetcher"),
        ("trainer.fit_loop.epoch_loop", epoch_loop, LOGGING_STEP),
        ("trainer.fit_loop.epoch_loop", epoch_loop, "_skip_next_val"),
        ("trainer.fit_loop.epoch_loop", epoch_loop, "_should_check_val_fx"),
        ("ModelCheckpoint", ModelCheckpoint(), "_every_n_train_steps"),
        *(
            ("ModelCheckpoint", ModelCheckpoint, name)
            for name in (
                "_should_skip_saving_checkpoint",
                "_monitor_candidates",
                "_save_topk_checkpoint",
                "_save_last_checkpoint",
            )
        ),
        ("RichProgressBar", RichProgressBar, "_update"),
    ]
    missing = missing_names(places)
    module, _, launcher = SUBPROCESS_LAUNCHER.rpartition(".")
    if not _has(importlib.import_module(module), launcher):
        missing.append(SUBPROCESS_LAUNCHER)
    if LOGGING_STEP not in epoch_loop.state_dict()["state_dict"]:
        missing.append(f"the checkpoint key epoch_loop.state_dict.{LOGGING_STEP}")
    refuse_missing(missing)


def missing_names(places: list[tuple[str, Any, str]]) -> list[str]:
    """``owner.name`` for each ``(owner, value, name)`` whose ``value`` lacks the dotted ``name``."""
    return [f"{owner}.{name}" for owner, value, name in places if not _has(value, name)]


def refuse_missing(missing: list[str]) -> None:
    """One line naming what the installed Lightning lacks and the version convlens was written for."""
    if missing:
        raise ConvlensError(
            f"pytorch-lightning {pytorch_lightning.__version__} lacks {', '.join(missing)}, which convlens uses "
            f"(written for pytorch-lightning {WRITTEN_FOR}, see docs/testing.md); "
            f"install it: pip install pytorch-lightning=={WRITTEN_FOR}"
        )


def _has(value: Any, dotted: str) -> bool:
    try:
        reduce(getattr, dotted.split("."), value)
    except AttributeError:
        return False
    return True


def validation_follows(trainer: Trainer) -> bool:
    """Whether the fit loop validates right after the training batch now ending: Lightning's own decision."""
    loop = trainer.fit_loop.epoch_loop
    return not loop._skip_next_val and loop._should_check_val_fx(trainer.fit_loop._data_fetcher)


def unlog_one_step(loop_checkpoint: dict[str, Any]) -> None:
    """Take one step off a saved fit loop's logging count, which Lightning adds back for the last call on resume."""
    loop_checkpoint["epoch_loop.state_dict"][LOGGING_STEP] -= 1


def every_n_train_steps(callback: ModelCheckpoint) -> int:
    """A ``ModelCheckpoint``'s step interval (0: it saves on no step count); Lightning keeps it private."""
    return getattr(callback, "_every_n_train_steps", 0)


def save_as_scheduled(callback: ModelCheckpoint, trainer: Trainer) -> bool:
    """The callback's own top-k and ``last`` saves, as its triggers make them; False if it skips saving now."""
    if callback._should_skip_saving_checkpoint(trainer):
        return False
    candidates = callback._monitor_candidates(trainer)
    callback._save_topk_checkpoint(trainer, candidates)
    callback._save_last_checkpoint(trainer, candidates)
    return True


def set_stop_flag(trainer: Trainer, value: bool) -> None:
    """The flag Lightning's own SIGTERM handler sets; its loops check it after every batch."""
    trainer._signal_connector.received_sigterm = value


def move_progress_bar(bar: RichProgressBar, task_id: Any, done: int) -> None:
    """RichProgressBar's own way to move one of its bars (it has no public one)."""
    bar._update(task_id, done)


def relaunches_the_script(trainer: Trainer) -> bool:
    """Whether the strategy starts this script again per device (``ddp`` off a cluster), as Lightning's
    subprocess-script launcher does."""
    module, _, name = SUBPROCESS_LAUNCHER.rpartition(".")
    launcher = trainer.strategy.launcher
    return isinstance(launcher, getattr(importlib.import_module(module), name)) and launcher.num_processes > 1
