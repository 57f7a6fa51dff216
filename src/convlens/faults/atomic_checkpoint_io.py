"""Checkpoint files that are never half-written, whenever the process dies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from convlens.faults.atomic_files import replaced_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write beside the target under a hidden temporary name, flush to disk, then rename over the target.

    A kill at any moment leaves the previous file or the new one, never part of one. Lightning's own writer
    stages the bytes in the system temporary folder and moves them, which is a copy in place when that folder
    is on another filesystem than the run, and it does not flush to disk before the move.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options; got {storage_options!r}")
        with replaced_atomically(path) as temporary:
            torch.save(checkpoint, temporary)
