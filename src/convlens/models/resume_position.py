"""Where in its epoch a checkpoint stopped, counted in optimizer steps, so a resume may cut steps into other calls.

Lightning saves the training loop's position in calls (its "batches") and the training loader's in the batches
it handed out; with several optimizer steps per call both mean steps only together with the chunk size. A
checkpoint therefore records how it was stepped, and a resume with another ``model.steps_per_call`` (or a
validation interval that changes ``auto``) rewrites the saved counters into its own calls before Lightning reads
them: the same samples follow, validation falls at the same steps, and the run ends at the step its settings
ask for. What cannot be rewritten exactly (another batch size mid-epoch, a position between two of the new
calls) is refused in one line naming the setting and the value the checkpoint was saved with.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from pytorch_lightning import Trainer

from convlens.errors import ConvlensError
from convlens.lightning_internals import unlog_one_step

RECORD = "convlens_stepping"  # the checkpoint key; absent from checkpoints of older convlens versions


@dataclass(frozen=True)
class Stepping:
    """How a run cuts its epoch: ``steps_per_call`` optimizer steps a call, of ``batch_size`` images each."""

    steps_per_call: int
    steps_per_epoch: int | None  # None: not known when a resume with one step per call reads the checkpoint
    batch_size: int | None


def record_stepping(checkpoint: dict[str, Any], stepping: Stepping) -> None:
    checkpoint[RECORD] = asdict(stepping)


def continue_in_new_calls(checkpoint: dict[str, Any], now: Stepping) -> None:
    """Rewrite the saved loop and loader position from the checkpoint's calls into ``now``'s (in place)."""
    if RECORD not in checkpoint or "loops" not in checkpoint:
        return
    saved = Stepping(**checkpoint[RECORD])
    loop = checkpoint["loops"]["fit_loop"]
    progress = loop["epoch_loop.batch_progress"]
    calls_done = progress["current"]["processed"]  # also counts a call whose on_train_batch_end saved this file
    steps_done = min(calls_done * saved.steps_per_call, saved.steps_per_epoch or math.inf)
    mid_epoch = 0 < steps_done < (saved.steps_per_epoch or math.inf)
    if mid_epoch and now.batch_size != saved.batch_size:
        raise ConvlensError(
            f"data.batch_size={now.batch_size}, but this checkpoint stopped after step {steps_done} of an epoch of "
            f"batches of {saved.batch_size}: its place in the epoch means other images in batches of "
            f"{now.batch_size}; resume with data.batch_size={saved.batch_size}, or resume from a checkpoint saved "
            "at the end of an epoch"
        )
    if now.steps_per_call == saved.steps_per_call:
        return
    if mid_epoch and steps_done % now.steps_per_call:
        raise ConvlensError(
            f"model.steps_per_call={now.steps_per_call} (calls of {now.steps_per_call} optimizer steps) cannot start "
            f"after step {steps_done} of the epoch, where this checkpoint stopped; resume with "
            f"model.steps_per_call={saved.steps_per_call}, as it was saved with, or another divisor of {steps_done}"
        )
    new_calls = math.ceil(steps_done / now.steps_per_call)
    _shift_counters(progress, calls_done, new_calls)
    for loader_state in loop.get("state_dict", {}).get("combined_loader", []):
        if isinstance(loader_state, dict) and "batches_served" in loader_state:
            loader_state["batches_served"] = new_calls
    _move_step_count(loop, saved.steps_per_call, now.steps_per_call)


def _shift_counters(progress: dict[str, Any], calls_done: int, new_calls: int) -> None:
    """Every call counter moves by the same amount, so the differences Lightning reads stay as saved."""
    for scope in ("current", "total"):
        for key, value in progress[scope].items():
            progress[scope][key] = value - calls_done + new_calls


def _move_step_count(loop: dict[str, Any], saved_per_call: int, now_per_call: int) -> None:
    """One step per call counts optimizer steps in Lightning's automatic loop, several in its manual one."""
    automatic = loop["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]
    manual = loop["epoch_loop.manual_optimization.optim_step_progress"]
    if saved_per_call > 1 and now_per_call == 1:
        for scope in ("current", "total"):
            steps = manual[scope]["completed"]
            automatic["step"][scope].update(ready=steps, completed=steps)
            automatic["zero_grad"][scope].update(ready=steps, started=steps, completed=steps)
    elif saved_per_call == 1 and now_per_call > 1:
        for scope in ("current", "total"):
            steps = automatic["step"][scope]["completed"]
            manual[scope].update(ready=steps, completed=steps)


def reopen_an_unfinished_epoch(trainer: Trainer, checkpoint: dict[str, Any]) -> None:
    """A fit stopped inside an epoch (by ``max_steps``) counts that epoch as done; its checkpoint says it is not.

    Resumed without the step limit, the run then trains the rest of that epoch and the epochs after it, as the
    settings ask, instead of ending at once.
    """
    calls = trainer.fit_loop.epoch_loop.batch_progress.current.completed
    if not 0 < calls < trainer.num_training_batches:
        return
    loop = checkpoint["loops"]["fit_loop"]
    epochs = loop["epoch_progress"]
    for scope in ("current", "total"):
        if epochs[scope]["completed"] == epochs[scope]["ready"]:
            epochs[scope]["processed"] = epochs[scope]["completed"] = epochs[scope]["ready"] - 1
    checkpoint["epoch"] = epochs["current"]["completed"]
    # As a save at a validation's end has it: Lightning adds the last call to its logging step when it resumes.
    unlog_one_step(loop)
