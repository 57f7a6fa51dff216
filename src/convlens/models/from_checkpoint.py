"""Loading a trained classifier back from a checkpoint, with an error a user can act on when that fails."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from convlens.errors import ConvlensError
from convlens.models.classifier import ConvNetClassifier

# What torch.load and Lightning raise for a file that is a zip but not a usable checkpoint.
LOAD_ERRORS = (RuntimeError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile)


def unreadable(path: Path, error: Exception) -> ConvlensError:
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return ConvlensError(
        f"{path} is not a readable convlens checkpoint ({first_line}); pass a .ckpt written by src/train.py"
    )


def checked_checkpoint_path(ckpt_path: str | os.PathLike | None) -> Path:
    """The checkpoint as an existing file, or a one-line error saying how to name one."""
    if ckpt_path in (None, "", "???"):
        raise ConvlensError("no checkpoint given; pass ckpt_path=<run dir>/checkpoints/last.ckpt")
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        inside = sorted(path.glob("*.ckpt")) or sorted(path.glob("checkpoints/*.ckpt"))
        hint = f"e.g. ckpt_path={inside[-1]}" if inside else "pass ckpt_path=<run dir>/checkpoints/<name>.ckpt"
        raise ConvlensError(f"ckpt_path={path} is a folder, not a checkpoint file; {hint}")
    if not path.is_file():
        raise ConvlensError(f"checkpoint {path} does not exist; pass ckpt_path=<run dir>/checkpoints/<name>.ckpt")
    return path


def newest_last_checkpoint(runs_dir: str | os.PathLike) -> Path:
    """``ckpt_path=last``: the most recently written ``last.ckpt`` of any training run under ``runs_dir``."""
    candidates = sorted(Path(runs_dir).glob("*/checkpoints/last.ckpt"), key=lambda path: path.stat().st_mtime)
    if not candidates:
        raise ConvlensError(
            f"ckpt_path=last, but no run under {runs_dir} has checkpoints/last.ckpt; "
            "train first, or pass ckpt_path=<run dir>/checkpoints/<name>.ckpt"
        )
    return candidates[-1]


def read_checkpoint(path: Path) -> dict:
    """The checkpoint's contents, tensors and plain values only (``weights_only=True``: no code runs)."""
    if not zipfile.is_zipfile(path):
        raise ConvlensError(
            f"{path} is not a checkpoint (not a PyTorch archive: truncated, or another kind of file); "
            "pass a .ckpt written by src/train.py"
        )
    with zipfile.ZipFile(path) as archive:  # torch.load does not check the records' CRCs; damaged weights would load
        damaged = archive.testzip()
    if damaged is not None:
        # torch.save names the archive's top folder after the file it wrote: for convlens's checkpoints, the
        # writer's hidden temporary file (faults/atomic_files.py). The part inside says where the damage is.
        record = damaged.partition("/")[2] or damaged
        raise ConvlensError(
            f"{path} is damaged (its record {record} fails its CRC check); use another checkpoint of the run, "
            "e.g. its last.ckpt or best-*.ckpt"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as error:
        raise unreadable(path, error) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConvlensError(f"{path} holds no model weights (no state_dict); pass a .ckpt written by src/train.py")
    return checkpoint


def check_same_architecture(path: Path, checkpoint: dict, model: torch.nn.Module) -> None:
    """Resuming needs every weight to fit the model this run's config builds; name the ones that do not."""
    saved = {name: tuple(value.shape) for name, value in checkpoint["state_dict"].items()}
    built = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    differences = [
        f"{name} {saved[name]} there, {built[name]} here"
        for name in built
        if name in saved and saved[name] != built[name]
    ]
    differences += [f"{name} missing there" for name in built if name not in saved]
    differences += [f"{name} not in this model" for name in saved if name not in built]
    if differences:
        net = (checkpoint.get("hyper_parameters") or {}).get("net") or {}
        settings = " ".join(f"model.net.{key}={value}".replace(" ", "") for key, value in net.items())
        hint = f"resume with the checkpoint's settings ({settings})" if settings else "resume with the same model"
        raise ConvlensError(
            f"{path} is from a different architecture: "
            + "; ".join(differences[:4])
            + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
            + f"; {hint}, or drop ckpt_path to start afresh"
        )


def checkpoint_to_resume(ckpt_path: str | os.PathLike, runs_dir: str | os.PathLike, model: torch.nn.Module) -> Path:
    """The file ``ckpt_path`` names (``last``: the newest run's ``last.ckpt``), checked to fit ``model``."""
    path = resolve_checkpoint(ckpt_path, runs_dir)
    check_same_architecture(path, read_checkpoint(path), model)
    return path


def resolve_checkpoint(ckpt_path: str | os.PathLike | None, runs_dir: str | os.PathLike) -> Path:
    """``last`` means the newest run's ``last.ckpt``; anything else must be an existing file."""
    return newest_last_checkpoint(runs_dir) if str(ckpt_path) == "last" else checked_checkpoint_path(ckpt_path)


def load_classifier(ckpt_path: str | os.PathLike, map_location: str | torch.device = "cpu") -> ConvNetClassifier:
    """Rebuild the model from the checkpoint alone: its architecture is stored in its hyperparameters."""
    path = checked_checkpoint_path(ckpt_path)
    read_checkpoint(path)
    try:
        return ConvNetClassifier.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    except LOAD_ERRORS as error:
        raise unreadable(path, error) from error
