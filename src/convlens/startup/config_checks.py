"""Checks that run before anything is built, so a wrong setting fails in one sentence, not a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from convlens.data.epoch_length import train_steps_per_epoch
from convlens.data.mnist_datamodule import MNIST_TRAIN_SIZE
from convlens.errors import ConvlensError
from convlens.startup.config_rules import RULES

GPU_ACCELERATORS = {"gpu", "cuda"}


def check_accelerator(trainer: DictConfig) -> None:
    if str(trainer.get("accelerator")) in GPU_ACCELERATORS and not torch.cuda.is_available():
        raise ConvlensError(
            f"trainer.accelerator={trainer.accelerator} asks for a GPU but torch sees none "
            "(torch.cuda.is_available() is False); use trainer=cpu or trainer=default"
        )


def shown(value: Any) -> str:
    """A value as it would be written on the command line: null, true, [4,8]."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(shown(item) for item in value) + "]"
    return str(value)


def settings(node: DictConfig, prefix: str = "") -> Iterator[tuple[str, Any, str | None]]:
    """(key, value, the interpolation it came from or None) for every setting under ``node``.

    Hydra's own ``hydra`` node, Hydra's ``_target_``-style keys and unset (``???``) values are left out; an
    interpolation that cannot be resolved yet is left to the code that uses it, except for a ConvlensError.
    """
    written = OmegaConf.to_container(node, resolve=False)
    assert isinstance(written, dict)  # a DictConfig's container is a dict
    key: Any  # OmegaConf types keys as any DictKeyType; a config's keys are the names written in it
    for key in node:
        name = f"{prefix}{key}"
        if str(key).startswith("_") or name == "hydra" or OmegaConf.is_missing(node, key):
            continue
        source = written[key] if OmegaConf.is_interpolation(node, key) else None
        try:
            value = node[key]
        except ConvlensError:
            raise
        except Exception:  # e.g. ${hydra:...} outside a Hydra run: whoever reads it reports it
            continue
        rule = RULES.get(name)
        if isinstance(value, DictConfig) and (rule is None or dict in rule.kinds):  # a section of settings
            yield from settings(value, name + ".")
        else:
            plain = (
                OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value
            )
            yield name, plain, source


def check_settings(cfg: DictConfig) -> None:
    """Every key declared in ``convlens.startup.config_rules`` holds a value of its type and range.

    Values set directly are checked before interpolated ones, so that the key a user typed is the one named.
    Keys added with ``+key=value`` have no declaration and are left to whatever reads them.
    """
    for name, value, source in sorted(settings(cfg), key=lambda item: item[2] is not None):
        rule = RULES.get(name)
        if rule is not None and not rule.accepts(value):
            origin = f" (from {source})" if source is not None else ""
            raise ConvlensError(f"{name}={shown(value)}{origin} must be {rule.expected}; try {name}={rule.example}")


def check_interval_fits(trainer: Any, images: int, batch_size: int, world_size: int = 1) -> None:
    """An interval past the end of the epoch would mean no validation at all; Lightning only says so mid-setup.

    ``trainer`` is the trainer's config or the Trainer itself: both name the settings alike.
    """
    interval, every_n_epochs = _setting(trainer, "val_check_interval"), _setting(trainer, "check_val_every_n_epoch")
    if (
        _setting(trainer, "fast_dev_run")
        or not isinstance(interval, int)
        or isinstance(interval, bool)
        or every_n_epochs is None
    ):
        return  # a fraction of the epoch, None, a time such as "00:00:10:00", or counted across epochs
    limit = _setting(trainer, "limit_train_batches")
    limit = None if limit == 1.0 else limit
    batches = train_steps_per_epoch(images, batch_size, world_size, limit)
    if interval > batches:
        counted = f"{images} images / data.batch_size={batch_size}" + (
            f", cut by trainer.limit_train_batches={limit}" if limit is not None else ""
        )
        raise ConvlensError(
            f"trainer.val_check_interval={interval} batches, but an epoch has {batches} training batches "
            f"({counted}); set trainer.val_check_interval to at most {batches}, or to 1.0 for once an epoch"
        )


def _setting(trainer: Any, name: str) -> Any:
    return trainer.get(name) if isinstance(trainer, DictConfig) else getattr(trainer, name)


def check_train_config(cfg: DictConfig) -> None:
    """Every setting a user may mistype, checked before data or model are touched."""
    check_settings(cfg)
    check_accelerator(cfg.trainer)
    if str(cfg.data.get("_target_", "")).endswith(".MNISTDataModule"):  # other data: checked once it is loaded
        check_interval_fits(cfg.trainer, MNIST_TRAIN_SIZE, cfg.data.batch_size)


def check_eval_config(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise ConvlensError(
            "no checkpoint given; pass ckpt_path=<run dir>/checkpoints/last.ckpt, or ckpt_path=last "
            "for the newest run's"
        )
    check_settings(cfg)
    check_accelerator(cfg.trainer)
