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
    """

    def __init__(self) -> None:
        self._to_restore: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
        return {"torch": torch.get_rng_state(), "cuda": cuda}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._to_restore is None:
            return
        torch.set_rng_state(self._to_restore["torch"])
        if self._to_restore["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self._to_restore["cuda"])
        self._to_restore = None
