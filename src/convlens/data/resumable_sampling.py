"""A shuffled training loader that a mid-epoch checkpoint can pick up exactly where it stopped.

Lightning saves and restores a training loader's ``state_dict`` with the checkpoint when the loader has one.
This one records the seed of the current epoch's shuffle and how many batches it has handed out; restored,
it draws the same permutation and skips what was already trained on. Until a restore, the order is exactly
a plain ``DataLoader(shuffle=True)``'s: the seed comes from the global torch generator, the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler


class ReplayableRandomSampler(RandomSampler):
    """``RandomSampler`` that remembers the seed it drew for this epoch, and can replay an epoch from an offset."""

    def __init__(self, data_source) -> None:
        super().__init__(data_source)
        self.epoch_seed: int | None = None
        self._replay: tuple[int, int] | None = None  # (seed, samples to skip), set by a restore

    def replay(self, seed: int, skip: int) -> None:
        self._replay = (seed, skip)

    def __iter__(self) -> Iterator[int]:
        if self._replay is not None:
            (self.epoch_seed, skip), self._replay = self._replay, None
        else:  # what RandomSampler does with generator=None
            self.epoch_seed, skip = int(torch.empty((), dtype=torch.int64).random_().item()), 0
        self.generator = torch.Generator().manual_seed(self.epoch_seed)
        return itertools.islice(super().__iter__(), skip, None)


class ResumableLoader(DataLoader):
    """A training ``DataLoader`` over a ``ReplayableRandomSampler`` with Lightning's ``state_dict`` interface."""

    def __init__(self, dataset, sampler=None, shuffle: bool = True, **kwargs: Any) -> None:
        # Another sampler (a DDP shard, or Lightning's for overfit_batches) is used as given, and not replayed.
        if sampler is None and not shuffle:
            raise ValueError("ResumableLoader shuffles; pass a sampler for another order")
        super().__init__(
            dataset, sampler=sampler if sampler is not None else ReplayableRandomSampler(dataset), **kwargs
        )
        self.batches_served = 0
        self._resumed_at = 0

    # The base class promises its own iterator class; a counting generator over it is all that callers use.
    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return self._counted(super().__iter__())  # the base iterator is made now, as a plain DataLoader's is

    def _counted(self, batches: Iterator[Any]) -> Iterator[Any]:
        self.batches_served, self._resumed_at = self._resumed_at, 0
        for batch in batches:
            self.batches_served += 1
            yield batch

    def state_dict(self) -> dict[str, int | None]:
        return {"epoch_seed": getattr(self.sampler, "epoch_seed", None), "batches_served": self.batches_served}

    def load_state_dict(self, state: dict[str, int | None]) -> None:
        served = state.get("batches_served", 0)
        assert served is not None  # state_dict always saves a count
        sampler, seed = self.sampler, state.get("epoch_seed")
        if not isinstance(sampler, ReplayableRandomSampler) or seed is None or not 0 < served < len(self):
            return  # saved at an epoch boundary: the next epoch draws a new seed, as it would have
        assert self.batch_size is not None  # a ResumableLoader batches by batch_size, not by a batch_sampler
        sampler.replay(seed, served * self.batch_size)
        self._resumed_at = served
