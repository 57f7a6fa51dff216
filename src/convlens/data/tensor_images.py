"""An in-memory image dataset that serves whole batches, so a batch costs one tensor gather, not 64 PIL calls."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset


class TensorImages(Dataset):
    """uint8 images held as one tensor, scaled to [0, 1] per batch exactly as ``transforms.ToTensor`` does.

    The DataLoader calls ``__getitems__`` with the indices its sampler chose, so shuffling and
    ``SubsetRandomSampler`` work unchanged; pair it with ``collate_fn=keep_batch``.
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 3:
            raise ValueError(f"expected uint8 images of shape (N, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].unsqueeze(0).float().div(255), int(self.targets[index])

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, device=self.images.device)
        return self.images[index].unsqueeze(1).float().div(255), self.targets[index]  # (B, 1, H, W), (B,)

    def to(self, device: torch.device | str) -> TensorImages:
        """Move the whole dataset once (e.g. onto the GPU) so batches are gathered where they are used."""
        return TensorImages(self.images.to(device), self.targets.to(device))


def keep_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate function for datasets whose ``__getitems__`` already returns a batch."""
    return batch
