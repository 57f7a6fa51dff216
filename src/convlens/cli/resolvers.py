"""Config resolvers, so that facts found in the data reach other config groups by plain interpolation.

``conf/data/imagefolder.yaml`` reads its class names from the folder (``${convlens.image_classes:${data.root}}``)
and counts them (``${convlens.len:...}``); ``conf/model/convnet.yaml`` takes ``num_classes`` from there.
"""

from __future__ import annotations

import os

from omegaconf import OmegaConf


def image_classes(root: str | None) -> list[str]:
    from convlens.data.imagefolder_datamodule import image_classes as classes_of  # torchvision only when used

    return classes_of(root)


def register_resolvers() -> None:
    """Idempotent: entry points, tests and spawned DDP processes may each import this more than once."""
    if not OmegaConf.has_resolver("convlens.image_classes"):
        OmegaConf.register_new_resolver("convlens.image_classes", image_classes)
    if not OmegaConf.has_resolver("convlens.len"):
        OmegaConf.register_new_resolver("convlens.len", len)
    if not OmegaConf.has_resolver("convlens.pid"):  # in run folder names: no two running processes share one
        OmegaConf.register_new_resolver("convlens.pid", os.getpid, use_cache=True)
