"""How a DataModule splits its work across DDP processes so that every index is evaluated exactly once.

Lightning's own distributed sampler is switched off (``use_distributed_sampler: false`` in
``conf/trainer/default.yaml``): it wraps a ``SubsetRandomSampler`` in a ``DistributedSamplerWrapper`` whose
ranks draw their own random orders, so the ranks' shares overlap and miss images, and it pads uneven shares
with duplicates. Instead each rank takes a fixed, disjoint slice of the validation/test indices here.
Training keeps a ``DistributedSampler`` (equal step counts on every rank, as gradient sync needs; reshuffled
each epoch by Lightning's ``set_epoch``), seeded from the run's seed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytorch_lightning import Trainer
from torch.utils.data import Dataset, DistributedSampler, SubsetRandomSampler

from convlens.data.epoch_length import train_steps_per_epoch
from convlens.errors import ConvlensError


@dataclass(frozen=True)
class ProcessShard:
    """This process's place among the processes that train together."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def of(cls, trainer: Trainer | None) -> ProcessShard:
        """The trainer's global rank and world size; a DataModule used without a trainer is alone."""
        return cls(trainer.global_rank, trainer.world_size) if trainer is not None else cls()

    def device_batch_size(self, batch_size: int) -> int:
        """``data.batch_size`` is the global batch (what one optimizer step sees); each process takes its part."""
        if batch_size % self.world_size:
            raise ConvlensError(
                f"data.batch_size={batch_size} is the global batch and must divide evenly among the "
                f"{self.world_size} processes; use a multiple of {self.world_size}"
            )
        return batch_size // self.world_size

    def train_steps_per_epoch(self, dataset_size: int, batch_size: int, limit: int | float | None = None) -> int:
        """Optimizer steps in one epoch of this process's shard, cut by ``trainer.limit_train_batches``."""
        self.device_batch_size(batch_size)  # the global batch must divide among the processes
        return train_steps_per_epoch(dataset_size, batch_size, self.world_size, limit)

    def eval_sampler(self, indices: Sequence[int]) -> SubsetRandomSampler:
        """Every ``world_size``-th index from this rank's offset: disjoint shares that together cover all."""
        return SubsetRandomSampler(indices[self.rank :: self.world_size])

    def train_sampling(self, dataset: Dataset) -> dict[str, Any]:
        """DataLoader arguments: plain shuffling alone; a seeded ``DistributedSampler`` shard under DDP."""
        if self.world_size == 1:
            return {"shuffle": True}
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # set by seed_everything from the config's seed
        return {
            "sampler": DistributedSampler(
                dataset, num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=seed
            )
        }
