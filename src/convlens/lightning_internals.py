"""Lightning's private names that convlens relies on, each reached through one function here.

Lightning keeps these internal, so an upgrade may rename them; reaching them from one place keeps that risk
in sight (``docs/testing.md`` lists why each is needed).
"""

from __future__ import annotations

from pytorch_lightning import Trainer


def validation_follows(trainer: Trainer) -> bool:
    """Whether the fit loop validates right after the training batch now ending: Lightning's own decision."""
    loop = trainer.fit_loop.epoch_loop
    return not loop._skip_next_val and loop._should_check_val_fx(trainer.fit_loop._data_fetcher)
