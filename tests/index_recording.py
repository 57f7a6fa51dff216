"""Test-only: an MNIST DataModule whose images write down, per process and stage, which indices each batch fetched.

Only the datasets are wrapped; the samplers, loaders and sharding under test are MNISTDataModule's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from convlens.data.mnist_datamodule import MNISTDataModule
from convlens.data.tensor_images import TensorImages


class IndexRecordingImages(TensorImages):
    """TensorImages that appends each batch's indices, one line per batch, to ``record``."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, record: Path) -> None:
        super().__init__(images, targets)
        self.record = record

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        with open(self.record, "a") as handle:
            handle.write(" ".join(str(int(i)) for i in indices) + "\n")
        return super().__getitems__(indices)


class IndexRecordingMNIST(MNISTDataModule):
    def __init__(self, record_dir: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.record_dir = Path(record_dir)

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        rank = self.trainer.global_rank if self.trainer is not None else 0
        for name in ("train_set", "test_set"):
            dataset = getattr(self, name)
            if not isinstance(dataset, IndexRecordingImages):
                record = self.record_dir / f"{getattr(stage, 'value', stage)}-{name}-rank{rank}.txt"
                setattr(self, name, IndexRecordingImages(dataset.images, dataset.targets, record))


def read_batches(path: Path) -> list[list[int]]:
    return [[int(i) for i in line.split()] for line in path.read_text().splitlines()]
