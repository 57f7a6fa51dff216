"""Random shifts, rotations, scalings and elastic distortions of a training batch, on the device it is on.

Each image gets its own random transform, all in one ``F.affine_grid``/``F.grid_sample`` call for the whole batch:
a few kernels on the batch where it already is, so it costs little beside the step and works for every batch of a
chunk (see ``convlens.chunked``). kornia.augmentation does the same with more options, but would be a new
dependency for four lines of torch; torchvision.transforms.v2 draws one transform per call, so it would mean a
Python loop over the images of every batch. The elastic field's Gaussian blur is two 1-D convolutions (what
torchvision's ``gaussian_blur`` computes with one 2-D kernel: 2k products a pixel rather than k² for a side of k).

The random numbers come from torch's default generator of the batch's device (unless a ``generator`` is given),
the one that dropout uses and ``faults.random_state`` saves in checkpoints: a seeded run draws the same transforms
again, and a resumed run draws the ones the uninterrupted run drew. Only what is switched on draws anything.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class BatchAugment:
    """Transforms (N, C, H, W) images in [0, 1]; keeps shape, dtype, device and range. Strengths in pixels/degrees.

    ``max_shift_px``: each axis moves by up to this many pixels either way; ``max_rotation_deg``: turned by up to
    this many degrees either way; ``max_scale_change``: enlarged by a factor from [1 - it, 1 + it];
    ``elastic_alpha_px``: the strength
    of an elastic distortion (Simard et al. 2003: uniform noise in [-1, 1] per pixel, blurred by a Gaussian of
    ``elastic_sigma_px``, times alpha pixels), 0 for none. Pixels moved in from outside the image are black (0).
    """

    def __init__(
        self,
        max_shift_px: float = 0.0,
        max_rotation_deg: float = 0.0,
        max_scale_change: float = 0.0,
        elastic_alpha_px: float = 0.0,
        elastic_sigma_px: float = 4.0,
    ) -> None:
        self.max_shift_px = float(max_shift_px)
        self.max_rotation = math.radians(max_rotation_deg)
        self.max_scale_change = float(max_scale_change)
        self.elastic_alpha_px = float(elastic_alpha_px)
        self.elastic_sigma_px = float(elastic_sigma_px)

    @property
    def active(self) -> bool:
        return bool(self.max_shift_px or self.max_rotation or self.max_scale_change or self.elastic_alpha_px)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.active:
            return images
        n, _, height, width = images.shape
        theta = self.affine_matrices(n, height, width, images.device, generator)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (N, H, W, 2): where each pixel reads
        if self.elastic_alpha_px:
            grid = grid + self.elastic_field(n, height, width, images.device, generator)
        moved = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return moved.clamp_(0, 1).to(images.dtype)  # bilinear weights sum to 1: the clamp only removes rounding

    def uniform(
        self, shape: tuple[int, ...], low: float, high: float, device: torch.device, generator: torch.Generator | None
    ) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, device=device, generator=generator)

    def affine_matrices(
        self, n: int, height: int, width: int, device: torch.device, generator: torch.Generator | None
    ) -> torch.Tensor:
        """(N, 2, 3) maps from output to input coordinates in [-1, 1], where one pixel is 2 / side."""
        angle = (
            self.uniform((n,), -self.max_rotation, self.max_rotation, device, generator)
            if self.max_rotation
            else torch.zeros(n, device=device)
        )
        change = self.max_scale_change
        scale = (
            self.uniform((n,), 1 - change, 1 + change, device, generator) if change else torch.ones(n, device=device)
        )
        shift = (
            self.uniform((n, 2), -self.max_shift_px, self.max_shift_px, device, generator)
            if self.max_shift_px
            else torch.zeros(n, 2, device=device)
        )
        pixel = torch.tensor([2 / width, 2 / height], device=device)
        cos, sin = angle.cos() / scale, angle.sin() / scale  # reading at 1/scale enlarges by scale
        rows = [
            torch.stack([cos, -sin, shift[:, 0] * pixel[0]], dim=1),
            torch.stack([sin, cos, shift[:, 1] * pixel[1]], dim=1),
        ]
        return torch.stack(rows, dim=1)

    def elastic_field(
        self, n: int, height: int, width: int, device: torch.device, generator: torch.Generator | None
    ) -> torch.Tensor:
        """(N, H, W, 2) smooth random displacements in grid units (2 / side per pixel)."""
        field = self.uniform((n, 2, height, width), -1.0, 1.0, device, generator)
        radius = min(math.ceil(3 * self.elastic_sigma_px), min(height, width) - 1)  # reflect padding needs < side
        offsets = torch.arange(-radius, radius + 1, dtype=field.dtype, device=device)
        kernel = torch.exp(-0.5 * (offsets / self.elastic_sigma_px) ** 2)
        kernel = (kernel / kernel.sum()).expand(2, 1, 1, -1)  # one per field channel (x and y moves)
        field = F.conv2d(F.pad(field, (radius, radius, 0, 0), mode="reflect"), kernel, groups=2)  # along rows
        field = F.conv2d(F.pad(field, (0, 0, radius, radius), mode="reflect"), kernel.transpose(2, 3), groups=2)
        pixel = torch.tensor([2 / width, 2 / height], device=device).view(1, 2, 1, 1)
        return (self.elastic_alpha_px * field * pixel).permute(0, 2, 3, 1)
