"""Training loaders that hand over several batches per call, for a LightningModule that takes many steps per call.

``in_chunks`` rebuilds the DataModule's own training loader so that it draws ``steps_per_call`` batches' worth of
indices from the same sampler at once: the order of images is exactly that of one batch per call, and a
resumable loader keeps its state. ``StepBatches`` then cuts the gathered chunk back into batches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, default_collate

from convlens.errors import ConvlensError


class StepBatches:
    """A collate function: the chunk as a list of ``(images, labels)`` batches of ``batch_size`` (the last may be
    short, as the epoch's last batch is). A class, not a closure, so DataLoader workers and DDP can pickle it."""

    def __init__(self, batch_size: int, collate: Callable[[Any], tuple[torch.Tensor, torch.Tensor]] | None = None):
        self.batch_size = batch_size
        self.collate = collate or default_collate

    def __call__(self, samples: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = self.collate(samples)
        return list(zip(images.split(self.batch_size), labels.split(self.batch_size), strict=True))


def in_chunks(loader: DataLoader, steps_per_call: int) -> DataLoader:
    """The same loader (its class, dataset, sampler and workers) handing over ``steps_per_call`` batches a call.

    A DataLoader's batch size is fixed once it is made, so it is made again; the sampler object itself is kept,
    so its order, its DDP shard and a resume's replay are the ones the DataModule chose.
    """
    batch_size = loader.batch_size
    if batch_size is None or loader.drop_last:
        raise ConvlensError(
            "several optimizer steps per call need a training loader that batches by batch_size and keeps the "
            "epoch's short last batch (no batch_sampler, drop_last=False); use one, or set stepping=lightning"
        )
    return type(loader)(
        loader.dataset,
        batch_size=batch_size * steps_per_call,
        sampler=loader.sampler,
        collate_fn=StepBatches(batch_size, loader.collate_fn),
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
        persistent_workers=loader.persistent_workers,
        prefetch_factor=loader.prefetch_factor,
        timeout=loader.timeout,
        multiprocessing_context=loader.multiprocessing_context,
        worker_init_fn=loader.worker_init_fn,
        generator=loader.generator,
    )
