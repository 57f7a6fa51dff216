"""Test helper: real MNIST digits saved as PNG files in ImageFolder layout (one subfolder per class)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from torchvision import datasets

CLASSES = {0: "zero", 1: "one", 2: "two"}  # ImageFolder sorts them: one, two, zero


def write_digit_folder(data_dir: Path, root: Path, per_class: int, first: int = 0) -> Path:
    """``per_class`` training images of each digit in CLASSES, from training index ``first`` on, as PNGs."""
    mnist = datasets.MNIST(str(data_dir), train=True)
    counts = dict.fromkeys(CLASSES, 0)
    for index in range(first, len(mnist)):
        label = int(mnist.targets[index])
        if label in CLASSES and counts[label] < per_class:
            folder = root / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mnist.data[index].numpy()).save(folder / f"{index}.png")
            counts[label] += 1
        if min(counts.values()) == per_class:
            return root
    raise AssertionError("MNIST ran out of digits")
