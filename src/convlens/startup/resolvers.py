"""Config resolvers, so that facts found in the data reach other config groups by plain interpolation.

``conf/data/imagefolder.yaml`` reads its class names from the folder (``${convlens.image_classes:${data.root}}``)
and counts them (``${convlens.len:...}``); ``conf/model/convnet.yaml`` takes ``num_classes`` from there.
"""

from __future__ import annotations

import os
import re

from omegaconf import OmegaConf

from convlens.errors import ConvlensError

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")  # a folder name on any system, and a TensorBoard run name


def image_classes(root: str | None) -> list[str]:
    from convlens.data.imagefolder_datamodule import image_classes as classes_of  # torchvision only when used

    return classes_of(root)


def name_suffix(run_name: str | None) -> str:
    """``_<run_name>`` at the end of a run folder's name, or nothing for an unnamed run."""
    if run_name in (None, ""):
        return ""
    if not RUN_NAME.fullmatch(str(run_name)):
        raise ConvlensError(
            f"run_name={run_name} must be letters, digits and _ . + - (it names the run's folder); "
            "try run_name=bigger-lr"
        )
    return f"_{run_name}"


def register_resolvers() -> None:
    """Idempotent: entry points, tests and spawned DDP processes may each import this more than once."""
    if not OmegaConf.has_resolver("convlens.image_classes"):
        OmegaConf.register_new_resolver("convlens.image_classes", image_classes)
    if not OmegaConf.has_resolver("convlens.len"):
        OmegaConf.register_new_resolver("convlens.len", len)
    if not OmegaConf.has_resolver("convlens.pid"):  # in run folder names: no two running processes share one
        OmegaConf.register_new_resolver("convlens.pid", os.getpid, use_cache=True)
    if not OmegaConf.has_resolver("convlens.name_suffix"):  # run_name=... at the end of the run folder's name
        OmegaConf.register_new_resolver("convlens.name_suffix", name_suffix)
