"""Carry torch's random generators across a resume."""

from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning import Callback, LightningModule, Trainer


class RandomStateInCheckpoint(Callback):
    """Save torch's generator states in each checkpoint and put them back when training resumes.

    Dropout and the validation sampler draw from them; restored after the resumed run's sanity check, a
    resumed run draws the very numbers the uninterrupted run drew (together with the resumable training
    loader, it trains on the same batches in the same order).

    Of the GPUs, only the one this process trains on (its current device) is saved and restored: a resume may
    see fewer or other GPUs, and under DDP each process puts the saved state on its own GPU, as seeding does.
    """

    def __init__(self) -> None:
        self._to_restore: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        cuda = torch.cuda.get_rng_state(torch.cuda.current_device()) if torch.cuda.is_initialized() else None
        return {"torch": torch.get_rng_state(), "cuda": cuda}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._to_restore is None:
            return
        torch.set_rng_state(self._to_restore["torch"])
        cuda = self._to_restore["cuda"]
        if isinstance(cuda, list):  # older checkpoints: one per visible GPU; the first is where one GPU trains
            cuda = cuda[0] if cuda else None
        if cuda is not None and pl_module.device.type == "cuda":
            torch.cuda.set_rng_state(cuda, pl_module.device)
        self._to_restore = None
