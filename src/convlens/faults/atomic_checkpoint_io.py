"""Checkpoint files that are never half-written, whenever the process dies."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.io import TorchCheckpointIO


def fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` itself survive a power cut."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write beside the target under a hidden temporary name, flush to disk, then rename over the target.

    A kill at any moment leaves the previous file or the new one, never part of one. Lightning's own writer
    stages the bytes in the system temporary folder and moves them, which is a copy in place when that folder
    is on another filesystem than the run, and it does not flush to disk before the move.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options; got {storage_options!r}")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".partial",
                                             delete=False)
        try:
            with handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(handle.name, 0o666 & ~umask)  # a temporary file is private; a checkpoint is not
            os.replace(handle.name, target)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise
        fsync_directory(target.parent)
