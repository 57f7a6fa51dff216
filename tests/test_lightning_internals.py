"""Every private Lightning name convlens reaches is checked when the trainer is built, in one line if missing."""

from __future__ import annotations

import pytest
from pytorch_lightning import Trainer

from convlens.errors import ConvlensError
from convlens.lightning_internals import WRITTEN_FOR, check_lightning_internals


def test_the_installed_lightning_has_every_private_name(tmp_path):
    check_lightning_internals(Trainer(logger=False, default_root_dir=tmp_path, enable_progress_bar=False))


def test_a_missing_private_name_is_one_line_naming_it_and_the_version_written_for(tmp_path):
    trainer = Trainer(logger=False, default_root_dir=tmp_path, enable_progress_bar=False)
    del trainer.fit_loop.epoch_loop._skip_next_val  # as a Lightning that renamed it would have it
    with pytest.raises(ConvlensError) as error:
        check_lightning_internals(trainer)
    line = str(error.value)
    assert "\n" not in line and "trainer.fit_loop.epoch_loop._skip_next_val" in line
    assert f"written for pytorch-lightning {WRITTEN_FOR}" in line
