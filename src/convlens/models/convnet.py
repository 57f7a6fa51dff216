"""The tutorial's ConvNet, layer for layer: two 5x5 convolutions with pooling, then two linear layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Dropout(nn.Dropout):
    """``nn.Dropout`` with its mask drawn as uniform numbers compared with ``p``: the same distribution, but on the
    CPU the uniform draw costs a fraction of the ``bernoulli_`` kernel that ``nn.Dropout`` uses, a visible part of
    this small network's step. The uniform numbers are float32 whatever the activations' dtype (bfloat16 has 256
    levels between 0 and 1, too coarse for ``p``), and the mask and the scale keep the activations' dtype
    (a float32 mask would promote bfloat16 ones; a bfloat16 scale would be rounded, biasing every output)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        kept = torch.rand(x.shape, device=x.device) >= self.p
        return x * kept * (1 / (1 - self.p))


class ConvNet(nn.Module):
    def __init__(
        self,
        depth: Sequence[int] = (4, 8),
        hidden: int = 512,
        dropout: float = 0.5,
        image_size: int = 28,
        num_classes: int = 10,
        in_channels: int = 1,
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        d1, d2 = depth
        padding = kernel_size // 2  # "same" convolutions: only the pools shrink the image
        self.conv1 = nn.Conv2d(in_channels, d1, kernel_size, padding=padding)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(d1, d2, kernel_size, padding=padding)
        self.fc1 = nn.Linear(d2 * (image_size // 4) ** 2, hidden)
        self.dropout = Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both post-ReLU conv outputs, before pooling: what the feature-map pictures show."""
        a1 = F.relu(self.conv1(x))  # (N, 4, 28, 28)
        a2 = F.relu(self.conv2(self.pool(a1)))  # (N, 8, 14, 14)
        return a1, a2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities over the classes."""
        _, a2 = self.features(x)  # (N, 8, 14, 14)
        x = self.pool(a2).flatten(1)  # (N, 8, 7, 7) -> (N, 392)
        x = self.dropout(F.relu(self.fc1(x)))  # (N, 512)
        return F.log_softmax(self.fc2(x), dim=1)  # (N, 10)
