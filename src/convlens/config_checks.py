"""Checks that run before anything is built, so a wrong setting fails in one sentence, not a traceback."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from convlens.errors import ConvlensError

GPU_ACCELERATORS = {"gpu", "cuda"}
MNIST_TRAIN_SIZE = 60_000


def check_accelerator(trainer: DictConfig) -> None:
    if str(trainer.get("accelerator")) in GPU_ACCELERATORS and not torch.cuda.is_available():
        raise ConvlensError(
            f"trainer.accelerator={trainer.accelerator} asks for a GPU but torch sees none "
            "(torch.cuda.is_available() is False); use trainer=cpu or trainer=default")


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_optimizer(optimizer: DictConfig) -> None:
    lr = optimizer.get("lr")
    if lr is not None and (not is_number(lr) or not lr > 0):
        raise ConvlensError(f"model.optimizer.lr={lr} must be a number above 0; try model.optimizer.lr=0.001")
    momentum = optimizer.get("momentum")
    if momentum is not None and (not is_number(momentum) or not 0 <= momentum < 1):
        raise ConvlensError(
            f"model.optimizer.momentum={momentum} must be at least 0 and below 1; try model.optimizer.momentum=0.9")


def check_net(net: DictConfig) -> None:
    depth = net.get("depth")
    if (not isinstance(depth, Sequence) or isinstance(depth, str) or len(depth) != 2
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in depth)):
        shown = list(depth) if isinstance(depth, Sequence) and not isinstance(depth, str) else depth
        raise ConvlensError(
            f"model.net.depth={shown} must be two positive integers (channels of conv1 and conv2); "
            "try model.net.depth=[4,8]")
    hidden = net.get("hidden")
    if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden <= 0:
        raise ConvlensError(f"model.net.hidden={hidden} must be a positive integer; try model.net.hidden=512")
    dropout = net.get("dropout")
    if not is_number(dropout) or not 0 <= dropout < 1:
        raise ConvlensError(f"model.net.dropout={dropout} must be at least 0 and below 1; try model.net.dropout=0.5")


def check_batch_sizes(data: DictConfig) -> None:
    for key in ("batch_size", "eval_batch_size"):
        size = data.get(key)
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
            raise ConvlensError(f"data.{key}={size} must be a positive integer; try data.{key}=64")


def train_batches_per_epoch(trainer: DictConfig, batch_size: int) -> int:
    """What Lightning will count: the loader's length, cut by ``limit_train_batches`` (batches or a fraction)."""
    length = math.ceil(MNIST_TRAIN_SIZE / batch_size)
    limit = trainer.get("limit_train_batches")
    if limit is None:
        return length
    if isinstance(limit, int):
        return min(length, limit)
    return int(length * limit)


def check_val_check_interval(trainer: DictConfig, batch_size: int) -> None:
    """An interval past the end of the epoch would mean no validation at all; Lightning only says so mid-setup."""
    interval = trainer.get("val_check_interval")
    if not is_number(interval) or trainer.get("fast_dev_run"):
        return  # None, or a time such as "00:00:10:00", which Lightning checks itself
    if isinstance(interval, float):
        if not 0 < interval <= 1:
            raise ConvlensError(
                f"trainer.val_check_interval={interval} is a fraction of an epoch and must be in (0, 1], "
                "or an integer number of training batches; try trainer.val_check_interval=100")
        return
    batches = train_batches_per_epoch(trainer, batch_size)
    if interval <= 0 or (trainer.get("check_val_every_n_epoch") is not None and interval > batches):
        limit = trainer.get("limit_train_batches")
        counted = f"{MNIST_TRAIN_SIZE} images / data.batch_size={batch_size}" + (
            f", cut by trainer.limit_train_batches={limit}" if limit is not None else "")
        raise ConvlensError(
            f"trainer.val_check_interval={interval} batches, but an epoch has {batches} training batches "
            f"({counted}); set trainer.val_check_interval to at most {batches}")


def check_train_config(cfg: DictConfig) -> None:
    """Every setting a user may mistype, checked before data or model are touched."""
    check_accelerator(cfg.trainer)
    check_optimizer(cfg.model.optimizer)
    check_net(cfg.model.net)
    check_batch_sizes(cfg.data)
    if str(cfg.data.get("_target_", "")).endswith(".MNISTDataModule"):  # other data: Lightning counts the epoch
        check_val_check_interval(cfg.trainer, cfg.data.batch_size)


def check_eval_config(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise ConvlensError("no checkpoint given; pass ckpt_path=<run dir>/checkpoints/last.ckpt, or ckpt_path=last "
                            "for the newest run's")
    check_accelerator(cfg.trainer)
    check_batch_sizes(cfg.data)
