"""Loading a trained classifier back from a checkpoint, with an error a user can act on when that fails."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from convlens.errors import ConvlensError
from convlens.models.classifier import ConvNetClassifier


def checked_checkpoint_path(ckpt_path: str | os.PathLike | None) -> Path:
    """The checkpoint as an existing file, or a one-line error saying how to name one."""
    if ckpt_path in (None, "", "???"):
        raise ConvlensError("no checkpoint given; pass ckpt_path=<run dir>/checkpoints/last.ckpt")
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise ConvlensError(f"checkpoint {path} does not exist; pass ckpt_path=<run dir>/checkpoints/<name>.ckpt")
    return path


def load_classifier(ckpt_path: str | os.PathLike, map_location: str | torch.device = "cpu") -> ConvNetClassifier:
    """Rebuild the model from the checkpoint alone: its architecture is stored in its hyperparameters."""
    path = checked_checkpoint_path(ckpt_path)
    if not zipfile.is_zipfile(path):
        raise ConvlensError(
            f"{path} is not a checkpoint (not a PyTorch archive: truncated, or another kind of file); "
            "pass a .ckpt written by src/train.py")
    try:
        return ConvNetClassifier.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConvlensError(
            f"{path} is not a readable convlens checkpoint ({first_line}); "
            "pass a .ckpt written by src/train.py") from error
