"""A callback that shows, while training runs, what the ConvNet has learned and what it sees.

At every ``every_n_checks``-th validation check it logs to TensorBoard the conv kernels, the feature maps of
fixed probe images from the test set, the probes themselves and histograms of the conv weights and biases,
so the Images tab's step slider replays how they evolve. It keeps the train/validation error of every
check (read from what the LightningModule logged, which TensorBoard already has as ``train/err`` and
``val/err``), and at the end of fit draws the error curves and saves every picture as a PNG in the run
directory, with or without a TensorBoard logger, and gives them to MLflow or W&B if the run logs there. When
training images are augmented (``conf/augment``), it logs once, as training starts, the first training images
before and after a random augmentation.

It only reads the model, under ``torch.no_grad``, and draws no random numbers from torch's generators (the
augmentation picture has its own), so training is bit-identical with it on or off.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.loggers import TensorBoardLogger

from convlens.errors import ConvlensError
from convlens.pictures import draw
from convlens.pictures.draw import PictureStyle
from convlens.trackers.records import log_pictures

CONVS = ("conv1", "conv2")


class ConvNetPictures(Callback):
    def __init__(
        self,
        style: PictureStyle,
        probe_indices: Sequence[int] = (100,),
        every_n_checks: int = 1,
        tensorboard_tile_px: int = 1,
        augmentation_images: int = 16,
    ) -> None:
        if every_n_checks < 1:
            raise ConvlensError(
                f"callbacks.convnet_pictures.every_n_checks={every_n_checks} must be at least 1 "
                "(1 = draw at every validation check)"
            )
        if not probe_indices:
            raise ConvlensError(
                "callbacks.convnet_pictures.probe_indices is empty; give at least one test-set index, e.g. [100]"
            )
        self.style = style  # the PNGs at the end of fit
        # TensorBoard enlarges images to its card width itself, with crisp (pixelated) edges: pictures logged at
        # their own small size look the same there and cost little to draw and encode at every check.
        self.tensorboard_style = dataclasses.replace(
            style, tile_px=tensorboard_tile_px, separator_px=min(style.separator_px, 1)
        )
        self.probe_indices = [int(index) for index in probe_indices]
        self.every_n_checks = every_n_checks
        self.augmentation_images = augmentation_images
        self.probes: torch.Tensor | None = None  # (P, 1, 28, 28), fetched once from the test set
        self.checks = 0
        self.train_err: list[float] = []
        self.val_err: list[float] = []
        self.last_drawn_step = -1

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        test_set = getattr(trainer.datamodule, "test_set", None)
        if test_set is None:
            raise ConvlensError(
                "callbacks.convnet_pictures needs a datamodule with a test_set to take its probe "
                "images from; use data=mnist or set callbacks.convnet_pictures=null"
            )
        bad = [index for index in self.probe_indices if not 0 <= index < len(test_set)]
        if bad:
            raise ConvlensError(
                f"callbacks.convnet_pictures.probe_indices has {bad}, outside the test set's "
                f"0..{len(test_set) - 1}; pick indices in that range"
            )
        self.probes = torch.stack([test_set[index][0] for index in self.probe_indices]).cpu()

    @torch.no_grad()
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        augmentation = getattr(pl_module, "augmentation", None)
        train_set = getattr(trainer.datamodule, "train_set", None)
        writer = tensorboard_writer(trainer)
        if augmentation is None or train_set is None or writer is None or not trainer.is_global_zero:
            return
        count = min(self.augmentation_images, len(train_set))
        before = torch.stack([train_set[index][0] for index in range(count)]).to(pl_module.device)
        generator = torch.Generator(device=before.device).manual_seed(0)  # its own: training's draws stay the same
        picture = draw.before_and_after(
            before, augmentation(before, generator=generator), self.tensorboard_style.separator_px
        )
        writer.add_image("augmentation/before_after", picture, global_step=trainer.global_step)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        self.checks += 1
        self.train_err.append(metric(trainer, "train/err"))
        self.val_err.append(metric(trainer, "val/err"))
        if (self.checks - 1) % self.every_n_checks == 0:
            self.log_pictures(trainer, pl_module)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero or trainer.fast_dev_run:  # a smoke test saves nothing
            return
        self.log_pictures(trainer, pl_module)
        drawn = self.draw(pl_module, self.style)
        curves = draw.rendered(draw.error_curves(self.train_err, self.val_err, "validation check"))
        writer = tensorboard_writer(trainer)
        if writer is not None:
            writer.add_image("error_curves", curves, global_step=trainer.global_step)
        run_dir = Path(trainer.default_root_dir)
        saved = {
            name.replace("/", "_"): draw.save_png(picture, run_dir / f"{name.replace('/', '_')}.png")
            for name, picture in {**drawn, "error_curves": curves}.items()
        }
        log_pictures(trainer, saved)  # MLflow's artifacts, W&B's images

    def log_pictures(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Log every picture of the model as it is now, unless this step already has them."""
        writer = tensorboard_writer(trainer)
        step = trainer.global_step
        if writer is not None and step != self.last_drawn_step:
            for tag, picture in self.draw(pl_module, self.tensorboard_style).items():
                writer.add_image(tag, picture, global_step=step)
            for name in CONVS:
                conv = getattr(pl_module.net, name)
                writer.add_histogram(f"histograms/{name}.weight", conv.weight.detach().cpu(), global_step=step)
                writer.add_histogram(f"histograms/{name}.bias", conv.bias.detach().cpu(), global_step=step)
        self.last_drawn_step = step

    @torch.no_grad()
    def draw(self, pl_module: LightningModule, style: PictureStyle) -> dict[str, torch.Tensor]:
        net, probes = pl_module.net, self.probes
        assert probes is not None  # setup() fetched them
        was_training = net.training
        net.eval()
        try:
            conv1_maps, conv2_maps = net.features(probes.to(pl_module.device))
        finally:
            net.train(was_training)
        return {
            "kernels/conv1": draw.conv1_kernels(net.conv1.weight, style),
            "kernels/conv2": draw.conv2_kernels(net.conv2.weight, style),
            "feature_maps/conv1": draw.feature_maps(conv1_maps, style),
            "feature_maps/conv2": draw.feature_maps(conv2_maps, style),
            "probe/image": draw.input_images(probes, style),
        }

    def state_dict(self) -> dict[str, Any]:
        """The error history travels in checkpoints, so a resumed run's curves start at the beginning."""
        return {"checks": self.checks, "train_err": self.train_err, "val_err": self.val_err}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.checks = state_dict["checks"]
        self.train_err = list(state_dict["train_err"])
        self.val_err = list(state_dict["val_err"])


def metric(trainer: Trainer, key: str) -> float:
    value = trainer.callback_metrics.get(key)
    return math.nan if value is None else float(value)


def tensorboard_writer(trainer: Trainer):
    """The SummaryWriter of the first TensorBoard logger among all the trainer's loggers, or None."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None
