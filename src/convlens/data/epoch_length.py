"""How many optimizer steps one training epoch has: the one count behind the config checks, the validation-interval
check, the several-steps-per-call plan and the DDP shards, so that none of them can disagree with Lightning's."""

from __future__ import annotations

import math


def train_steps_per_epoch(images: int, batch_size: int, world_size: int = 1, limit: int | float | None = None) -> int:
    """Training batches in one epoch, as Lightning counts them, for ``images`` in global batches of ``batch_size``.

    Each of ``world_size`` processes takes ``ceil(images / world_size)`` of them (``DistributedSampler`` pads the
    shards to equal size) in batches of ``batch_size // world_size``, the last one short. ``limit`` is
    ``trainer.limit_train_batches``: a count of batches, or a fraction of the epoch.
    """
    steps = math.ceil(math.ceil(images / world_size) / (batch_size // world_size))
    if limit is None:
        return steps
    if isinstance(limit, float):
        return int(steps * limit)
    return min(steps, limit)
