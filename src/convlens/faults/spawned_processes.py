"""Processes started by ``strategy=ddp_spawn`` (``trainer=ddp_cpu``) end their process group before they exit.

Left to the interpreter's exit, gloo's process group is torn down while its threads may still run, and a
process then aborts ("terminate called without an active exception") after its work is done, now and then,
failing the whole fit or test. Destroying the group when the trainer tears down makes the exit orderly; each
``fit`` or ``test`` spawns new processes, which make a group of their own.
"""

from __future__ import annotations

import torch.distributed as dist
from pytorch_lightning import Callback, LightningModule, Trainer


class EndProcessGroup(Callback):
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every process has finished its part before any of them leaves the group
            dist.destroy_process_group()
