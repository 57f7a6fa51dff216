"""Learning-rate schedules from ``conf/model/scheduler/``, as the scheduler configs Lightning steps.

A scheduler config is a torch scheduler (``_target_``, ``_partial_``) plus three keys of convlens's own, taken out
before it is built: ``interval`` (``epoch``: stepped after each epoch; ``step``: after each optimizer step),
``warmup_steps`` (a linear warm-up over the first optimizer steps, 0 for none) with ``warmup_start_factor``
(the fraction of the learning rate it starts from), and ``total_steps: auto`` (the run's optimizer steps, for
one-cycle). Checkpoints written before these keys existed held epoch schedules without warm-up, their defaults.

The warm-up is torch's ``LinearLR``, stepped per optimizer step beside the main schedule. Both change the rate
by a factor at each of their steps, so together they multiply: the rate is ``lr * warm-up(step) * schedule``
(exactly so for a constant schedule and a cosine to ``eta_min`` 0; one-cycle sets the rate outright, so it takes
no warm-up: its own rise, ``pct_start``, is one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from hydra.utils import instantiate
from torch.optim.lr_scheduler import LinearLR

from convlens.errors import ConvlensError

OWN_KEYS = ("interval", "warmup_steps", "warmup_start_factor")


def interval_of(config: Mapping[str, Any] | None) -> str:
    return "epoch" if config is None else str(config.get("interval", "epoch"))


def warmup_steps_of(config: Mapping[str, Any] | None) -> int:
    return 0 if config is None else int(config.get("warmup_steps", 0))


def changes_lr_every_step(config: Mapping[str, Any] | None) -> bool:
    return interval_of(config) == "step" or warmup_steps_of(config) > 0


def check_schedule(config: Mapping[str, Any] | None) -> None:
    """What a scheduler config must not combine; raised when the module is built, before anything runs."""
    if config is not None and warmup_steps_of(config) and config.get("total_steps") == "auto":
        raise ConvlensError(
            f"model.scheduler.warmup_steps={warmup_steps_of(config)} with one-cycle, which sets the "
            "rate itself and rises first (pct_start); set model.scheduler.warmup_steps=0"
        )


def known_length(total: float) -> int:
    """A fit's optimizer steps as a whole number; one-cycle cannot plan a run that may go on forever."""
    if not math.isfinite(total):
        raise ConvlensError(
            "model.scheduler.total_steps=auto needs a run of known length; set trainer.max_epochs or trainer.max_steps"
        )
    return int(total)


def lightning_schedulers(
    config: Mapping[str, Any] | None, optimizer: torch.optim.Optimizer, total_steps: Callable[[], int]
) -> list[dict[str, Any]]:
    """The main schedule and its warm-up (if any), each as ``{"scheduler", "interval"}`` in the order stepped.

    ``total_steps``: the fit's optimizer steps, asked for only by one-cycle's ``total_steps: auto``."""
    if config is None:
        return []
    torch_args = {key: value for key, value in config.items() if key not in OWN_KEYS}
    if torch_args.get("total_steps") == "auto":
        torch_args["total_steps"] = total_steps()
    schedulers = [{"scheduler": instantiate(torch_args)(optimizer=optimizer), "interval": interval_of(config)}]
    if warmup_steps_of(config):
        warmup = LinearLR(
            optimizer,
            start_factor=config.get("warmup_start_factor", 0.1),
            end_factor=1.0,
            total_iters=warmup_steps_of(config),
        )
        schedulers.append({"scheduler": warmup, "interval": "step"})
    return schedulers
