"""A callback that presses Ctrl-C from inside a sweep's job: the signal lands at a known step, not by timing."""

from __future__ import annotations

import os
import signal

from hydra.core.hydra_config import HydraConfig
from pytorch_lightning import Callback, LightningModule, Trainer

JOB = "CONVLENS_TEST_CTRL_C_JOB"  # the job number to interrupt; unset: the callback does nothing


class CtrlCInJob(Callback):
    """Sends this process SIGINT, as a terminal's Ctrl-C would, as the first training batch of job $JOB starts."""

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        if os.environ.get(JOB) == str(HydraConfig.get().job.num) and trainer.global_step == 0:
            os.kill(os.getpid(), signal.SIGINT)
