"""A user's own picture of a digit, turned into what the ConvNet was trained on.

MNIST digits are light strokes on a dark background, scaled to fit a 20x20 box (keeping their aspect
ratio, anti-aliased) and pasted into 28x28 so that their centre of mass sits at the centre. A photo or scan
of a digit on paper is dark on light and of any size, so it gets the same treatment before the network sees it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import IO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from convlens.errors import ConvlensError

SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
FIX = "use a PNG or JPEG of one digit"  # says no key: visualize takes image=, predict images=


def load_digit(
    path: str | os.PathLike, *, size: int, digit_box: int, max_pixels: int, min_contrast: float, ink_threshold: float
) -> torch.Tensor:
    """The image at ``path`` as a (1, size, size) float tensor in [0, 1], light digit on dark, MNIST-style.

    ``max_pixels`` is checked on the header before any pixel is decoded, so a huge file costs nothing;
    ``min_contrast`` is how far (0..1) the digit must stand out from the background for the image not to
    count as blank; ink fainter than ``ink_threshold`` (a fraction of the darkest stroke) is paper texture
    and is dropped before the digit's bounding box is measured.
    """
    path = Path(path).expanduser()
    return mnist_style(
        open_checked(path, max_pixels),
        path,
        size=size,
        digit_box=digit_box,
        min_contrast=min_contrast,
        ink_threshold=ink_threshold,
    )


def mnist_style(
    image: Image.Image, name: str | os.PathLike, *, size: int, digit_box: int, min_contrast: float, ink_threshold: float
) -> torch.Tensor:
    """An image already in memory (a drawing, say) as ``load_digit`` makes it; ``name`` is what errors call it."""
    gray = grayscale(image, Path(name))
    ink = digit_ink(gray, Path(name), min_contrast, ink_threshold)
    return torch.from_numpy(centred(fitted(ink, digit_box), size)).unsqueeze(0)


def open_checked(path: Path, max_pixels: int) -> Image.Image:
    """Open and decode the file, refusing missing, empty, non-image, oversized and corrupt files in one line."""
    if not path.is_file():
        raise ConvlensError(f"image {path} does not exist; {FIX}")
    if path.stat().st_size == 0:
        raise ConvlensError(f"image {path} is an empty file; {FIX}")
    try:
        image = opened_within(path, f"image {path}", max_pixels)
    except (UnidentifiedImageError, OSError) as error:
        raise ConvlensError(f"{path} is not an image Pillow can read; {FIX}") from error
    try:
        image.load()
    except (OSError, ValueError) as error:
        raise ConvlensError(f"image {path} is truncated or corrupt ({error}); {FIX}") from error
    return image


def opened_within(source: str | os.PathLike | IO[bytes], name: str, max_pixels: int) -> Image.Image:
    """The image opened, not decoded: one of more than ``max_pixels`` is refused from its header, so a huge one
    costs nothing; ``name`` is what the error calls it. Pillow's errors for what is not an image pass through."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit below decides
            image = Image.open(source)
    except Image.DecompressionBombError as error:
        raise ConvlensError(f"{name} is far too large ({error}); scale it down below {max_pixels:,} pixels") from error
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ConvlensError(
            f"{name} is {width}x{height} = {width * height:,} pixels, more than the "
            f"{max_pixels:,} allowed; scale it down or raise preprocess.max_pixels"
        )
    return image


def grayscale(image: Image.Image, path: Path) -> np.ndarray:
    """Brightness in [0, 1] as float32, whatever the mode: 16-bit scaled by its range, alpha composited."""
    if image.mode in SIXTEEN_BIT_MODES:
        return np.asarray(image, dtype=np.float32) / 65535
    if image.mode in ("I", "F"):  # 32-bit: no fixed range, so use the image's own
        pixels = np.asarray(image, dtype=np.float32)
        low, high = float(pixels.min()), float(pixels.max())
        return (pixels - low) / (high - low) if high > low else np.zeros_like(pixels)
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        return composited(image.convert("RGBA"), path)
    try:
        return np.asarray(image.convert("RGB").convert("L"), dtype=np.float32) / 255
    except ValueError as error:
        raise ConvlensError(
            f"image {path} has colour mode {image.mode}, which cannot be made grayscale; "
            "save it as an RGB or grayscale PNG"
        ) from error


def composited(rgba: Image.Image, path: Path) -> np.ndarray:
    """Flatten transparency onto a background the strokes stand out from: white under dark ink, black under light."""
    gray = np.asarray(rgba.convert("L"), dtype=np.float32) / 255
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255
    if alpha.max() == 0:
        raise ConvlensError(f"image {path} is fully transparent: there is no digit to classify; {FIX}")
    ink_brightness = float((gray * alpha).sum() / alpha.sum())
    background = 1.0 if ink_brightness < 0.5 else 0.0
    return alpha * gray + (1 - alpha) * background


def digit_ink(gray: np.ndarray, path: Path, min_contrast: float, ink_threshold: float) -> np.ndarray:
    """The digit as ink in [0, 1] on a zero background, cropped to its bounding box.

    The background is the median of the border pixels; a light background means dark ink on paper, which is
    inverted to MNIST's light-on-dark. Contrast is stretched so the strongest stroke is 1, as in MNIST.
    """
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    background = float(np.median(border))
    if background > 0.5:
        gray, background = 1 - gray, 1 - background
    ink = np.clip(gray - background, 0, None)
    strongest = float(ink.max())
    if strongest < min_contrast:
        raise ConvlensError(
            f"image {path} looks blank (nothing differs from its background by more than {min_contrast:.0%}); {FIX}"
        )
    ink /= strongest
    ink[ink < ink_threshold] = 0
    rows, cols = np.nonzero(ink)
    return ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def fitted(ink: np.ndarray, box: int) -> np.ndarray:
    """Scale so the longer side is ``box`` pixels, keeping the aspect ratio, anti-aliased as MNIST's were."""
    height, width = ink.shape
    scale = box / max(height, width)
    new_size = (max(1, round(height * scale)), max(1, round(width * scale)))
    resized = F.interpolate(
        torch.from_numpy(ink)[None, None], size=new_size, mode="bilinear", antialias=True, align_corners=False
    )
    resized = resized[0, 0].clamp(0, 1)
    return (resized / resized.max()).numpy()  # averaging dims thin strokes; MNIST's strongest pixel is 1


def centred(digit: np.ndarray, size: int) -> np.ndarray:
    """Paste into a size x size canvas with the centre of mass at the centre (kept wholly inside)."""
    height, width = digit.shape
    total = digit.sum()
    row_mass = float((digit.sum(axis=1) * np.arange(height)).sum() / total)
    col_mass = float((digit.sum(axis=0) * np.arange(width)).sum() / total)
    middle = size / 2  # where MNIST's centres of mass lie: on average (14.0, 14.0) in 28x28
    top = min(max(round(middle - row_mass), 0), size - height)
    left = min(max(round(middle - col_mass), 0), size - width)
    canvas = np.zeros((size, size), dtype=np.float32)
    canvas[top : top + height, left : left + width] = digit
    return canvas
