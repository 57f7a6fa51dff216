"""Pictures of what the ConvNet learned: kernels and feature maps as coloured grids, and the error curves.

Pure functions on tensors, shared by the training callback (TensorBoard) and ``src/visualize.py`` (PNG files).
Grids look like matplotlib's ``imshow`` default, as in the tutorial: each map is scaled by its own minimum
and maximum and coloured with viridis; small maps are enlarged with nearest-neighbour so every pixel stays
a crisp square. A grid is a float tensor (3, H, W) in [0, 1], the layout TensorBoard's ``add_image`` takes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

from convlens.errors import ConvlensError


@dataclass(frozen=True)
class PictureStyle:
    """How grids look; the values live in ``conf/picture/default.yaml``."""

    tile_px: int  # small maps are enlarged by a whole factor until their longer side reaches this
    separator_px: int  # white lines between tiles (and around the grid)
    colormap: str  # a matplotlib colour map name
    title_px: int  # height of the title band above a titled picture

    def __post_init__(self) -> None:
        if self.colormap not in matplotlib.colormaps:
            raise ConvlensError(
                f"picture.colormap={self.colormap} is not a matplotlib colour map; "
                "use viridis (imshow's default), gray, magma, ..."
            )
        if self.tile_px < 1 or self.separator_px < 0 or self.title_px < 1:
            raise ConvlensError(
                f"picture.tile_px={self.tile_px} and picture.title_px={self.title_px} must be at "
                f"least 1 and picture.separator_px={self.separator_px} at least 0"
            )


def coloured(maps: torch.Tensor, colormap: str) -> torch.Tensor:
    """(N, H, W) values -> (N, 3, H, W) colours, each map stretched over the whole colour map on its own."""
    maps = maps.detach().float().cpu()
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    scaled = torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), torch.zeros_like(maps))
    rgba = matplotlib.colormaps[colormap](scaled.numpy())  # (N, H, W, 4)
    return torch.from_numpy(rgba[..., :3]).permute(0, 3, 1, 2).float()


def grid(maps: torch.Tensor, columns: int, style: PictureStyle) -> torch.Tensor:
    """(N, H, W) maps -> one (3, H', W') picture, ``columns`` tiles per row, row-major."""
    tiles = coloured(maps, style.colormap)
    factor = max(1, math.ceil(style.tile_px / max(tiles.shape[-2:])))
    tiles = tiles.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)  # nearest-neighbour
    return make_grid(tiles, nrow=columns, padding=style.separator_px, pad_value=1.0)


def conv1_kernels(weight: torch.Tensor, style: PictureStyle) -> torch.Tensor:
    """conv1's kernels (out, 1, k, k) side by side in one row."""
    return grid(weight[:, 0], columns=weight.shape[0], style=style)


def conv2_kernels(weight: torch.Tensor, style: PictureStyle) -> torch.Tensor:
    """conv2's kernels (out, in, k, k) as the tutorial draws them: one column per kernel, one row per input channel."""
    out_channels, in_channels, k, _ = weight.shape
    by_input_channel = weight.transpose(0, 1).reshape(in_channels * out_channels, k, k)
    return grid(by_input_channel, columns=out_channels, style=style)


def feature_maps(activations: torch.Tensor, style: PictureStyle) -> torch.Tensor:
    """A layer's activations (images, channels, H, W): one row per image, one column per channel."""
    images, channels, height, width = activations.shape
    return grid(activations.reshape(images * channels, height, width), columns=channels, style=style)


def input_images(images: torch.Tensor, style: PictureStyle) -> torch.Tensor:
    """The probe images (N, 1, H, W) side by side, coloured like the maps they produce."""
    return grid(images[:, 0], columns=images.shape[0], style=style)


def before_and_after(before: torch.Tensor, after: torch.Tensor, separator_px: int) -> torch.Tensor:
    """Training images (N, 1, H, W) in [0, 1] above the same images augmented, in grey as the network sees them."""
    rows = torch.cat([before, after]).detach().float().cpu()
    return make_grid(rows, nrow=len(before), padding=separator_px, pad_value=1.0)


def error_curves(train_err: Sequence[float], val_err: Sequence[float], checks_label: str) -> Figure:
    """Training and validation error (percent) against validation checks, as the tutorial plots them."""
    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.add_subplot()
    axes.plot(range(1, len(train_err) + 1), train_err, label="training error")
    axes.plot(range(1, len(val_err) + 1), val_err, label="validation error")
    axes.set_xlabel(checks_label)
    axes.set_ylabel("error rate (%)")
    axes.set_ylim(bottom=0)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


def rendered(figure: Figure) -> torch.Tensor:
    """A matplotlib figure drawn once (Agg, no display needed) as a (3, H, W) picture like the grids."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div(255)


def to_pil(picture: torch.Tensor) -> Image.Image:
    pixels = picture.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(pixels), mode="RGB")


def titled(picture: torch.Tensor, title: str, style: PictureStyle) -> Image.Image:
    """The picture under a white band of ``style.title_px`` pixels holding ``title``, shrunk to fit the width."""
    body = to_pil(picture)
    canvas = Image.new("RGB", (body.width, body.height + style.title_px), "white")
    canvas.paste(body, (0, style.title_px))
    draw = ImageDraw.Draw(canvas)
    margin = style.separator_px + 2
    size = max(6, style.title_px * 2 // 3)
    font = ImageFont.load_default(size=size)
    while size > 6 and draw.textlength(title, font=font) > body.width - 2 * margin:
        size -= 1
        font = ImageFont.load_default(size=size)
    draw.text((margin, style.title_px // 2), title, fill="black", font=font, anchor="lm")
    return canvas


def save_png(picture: torch.Tensor | Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    (picture if isinstance(picture, Image.Image) else to_pil(picture)).save(path)
    return path
