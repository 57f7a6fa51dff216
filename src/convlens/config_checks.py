"""Checks that run before anything is built, so a wrong setting fails in one sentence, not a traceback."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from convlens.errors import ConvlensError

GPU_ACCELERATORS = {"gpu", "cuda"}


def check_accelerator(trainer: DictConfig) -> None:
    if str(trainer.get("accelerator")) in GPU_ACCELERATORS and not torch.cuda.is_available():
        raise ConvlensError(
            f"trainer.accelerator={trainer.accelerator} asks for a GPU but torch sees none "
            "(torch.cuda.is_available() is False); use trainer=cpu or trainer=default")
