"""Training loaders that hand over several batches per call, for a LightningModule that takes many steps per call.

The loader draws ``steps_per_call`` batches' worth of indices from the same sampler at once, so the order of
images is exactly that of one batch per call; ``StepBatches`` then cuts the gathered chunk back into batches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import default_collate


class StepBatches:
    """A collate function: the chunk as a list of ``(images, labels)`` batches of ``batch_size`` (the last may be
    short, as the epoch's last batch is). A class, not a closure, so DataLoader workers and DDP can pickle it."""

    def __init__(self, batch_size: int, collate: Callable[[Any], tuple[torch.Tensor, torch.Tensor]] | None = None):
        self.batch_size = batch_size
        self.collate = collate or default_collate

    def __call__(self, samples: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = self.collate(samples)
        return list(zip(images.split(self.batch_size), labels.split(self.batch_size), strict=True))
