"""Training-batch augmentation (conf/augment): what each transform keeps, that it is seeded, resumable and the same
with several steps per call, that validation and test batches are never touched, and that ``none`` draws nothing.
Real MNIST, real Lightning runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from pytorch_lightning import Callback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchvision import datasets

from conftest import compose_config
from convlens.data.batch_augment import BatchAugment
from convlens.errors import ConvlensError
from convlens.startup.config_checks import check_train_config
from convlens.startup.run_task import hydra_error_line
from convlens.tasks.train import train
from test_config_errors import hydra_error

AUGMENTATIONS = ("shift", "affine", "elastic")
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
# 2 epochs of 20 steps, validation and a step checkpoint every 10 steps.
RUN = (
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=20",
    "trainer.val_check_interval=10",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "callbacks.step_checkpoint.every_n_train_steps=10",
    "model.optimizer.lr=0.05",
    "trainer.deterministic=true",
    "trainer.enable_model_summary=false",
    "callbacks.rich_progress_bar=null",
    "trainer=cpu",
)


def augmentation(option: str, tmp_path: Path) -> BatchAugment:
    return BatchAugment(**compose_config("train", [f"augment={option}"], tmp_path).augment)


def mnist_batch(data_dir: Path, device: str) -> torch.Tensor:
    images = datasets.MNIST(str(data_dir), train=True).data[:64]
    return images.unsqueeze(1).float().div(255).to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("option", AUGMENTATIONS)
def test_each_augmentation_keeps_shape_dtype_device_and_range(option, device, tmp_path, data_dir):
    images = mnist_batch(data_dir, device)
    augmented = augmentation(option, tmp_path)(images, generator=torch.Generator(device).manual_seed(0))
    assert augmented.shape == images.shape and augmented.dtype == images.dtype
    assert augmented.device == images.device
    assert augmented.min() >= 0 and augmented.max() <= 1
    changed = (augmented - images).abs().flatten(1).amax(dim=1) > 0.1
    assert changed.all(), "every image gets its own transform"


def test_a_seed_gives_the_same_transforms_and_a_private_generator_leaves_torchs_alone(tmp_path, data_dir):
    images, augment = mnist_batch(data_dir, "cpu"), augmentation("elastic", tmp_path)
    torch.manual_seed(7)
    first = augment(images)
    torch.manual_seed(7)
    assert torch.equal(augment(images), first)
    state = torch.get_rng_state()
    augment(images, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)


def test_a_shift_moves_each_image_by_its_own_offset_in_pixels():
    images = torch.zeros(4, 1, 28, 28)
    images[:, 0, 12:14, 10:12] = 1.0  # a 2x2 dot, centred at x = 10.5, y = 12.5
    augment = BatchAugment(max_shift_px=3.0)
    theta = augment.affine_matrices(4, 28, 28, torch.device("cpu"), torch.Generator().manual_seed(1))
    moved = augment(images, generator=torch.Generator().manual_seed(1))
    assert torch.equal(theta[:, :, :2], torch.eye(2).expand(4, 2, 2))
    read_offset_px = theta[:, :, 2] * 28 / 2  # where each output pixel reads, relative to itself
    assert (read_offset_px.abs() <= 3).all() and len(set(read_offset_px[:, 0].tolist())) == 4
    mass = moved[:, 0].sum(dim=(1, 2))
    centre_x = (moved[:, 0] * torch.arange(28.0)).sum(dim=(1, 2)) / mass
    centre_y = (moved[:, 0] * torch.arange(28.0).unsqueeze(1)).sum(dim=(1, 2)) / mass
    # Bilinear interpolation keeps the centre of mass exact: the dot moved against the read offset.
    assert torch.allclose(
        torch.stack([centre_x, centre_y], dim=1), torch.tensor([10.5, 12.5]) - read_offset_px, atol=1e-4
    )


@pytest.mark.parametrize(
    ("override", "line"),
    [
        (
            "augment.max_shift_px=-1",
            "augment.max_shift_px=-1 must be a number at least 0; try augment.max_shift_px=2.0",
        ),
        (
            "augment.max_rotation_deg=181",
            "augment.max_rotation_deg=181 must be at least 0 and at most 180; try augment.max_rotation_deg=10.0",
        ),
        (
            "augment.max_scale_change=1",
            "augment.max_scale_change=1 must be at least 0 and below 1; try augment.max_scale_change=0.1",
        ),
    ],
)
def test_bad_strengths_are_refused_in_one_line(override, line, tmp_path):
    with pytest.raises(ConvlensError) as error:
        check_train_config(compose_config("train", ["augment=affine", override], tmp_path))
    assert str(error.value) == line


def test_an_unknown_augmentation_lists_the_real_ones():
    assert hydra_error_line(hydra_error("augment=mixup")) == (
        "augment=mixup is not an option: there is no conf/augment/mixup.yaml; choose augment=affine, "
        "augment=elastic, augment=none, augment=shift"
    )


WATCHERS: dict[str, WhatTheNetSees] = {}


class WhatTheNetSees(Callback):
    """Watches every input of the net: each evaluation batch must reach it as the loader gave it, every image an
    exact MNIST test image; and whether training inputs are still on the 1/255 grid of stored pixels (the
    dataset's are; interpolated, augmented ones are not). Added to a run as ``+callbacks.watch``."""

    def __init__(self, name: str) -> None:
        WATCHERS[name] = self
        self.hooked = False
        self.evaluated = 0
        self.training_on_grid: list[bool] = []
        self.last_evaluation_input: torch.Tensor | None = None
        self.rng_after_first_call: torch.Tensor | None = None

    def setup(self, trainer, pl_module, stage):
        if not self.hooked:  # fit and test both set up
            pl_module.net.register_forward_pre_hook(self.saw)
            self.hooked = True
        self.test_images = {image.numpy().tobytes() for image in trainer.datamodule.test_set.images.float().div(255)}

    def saw(self, net, args):
        (x,) = args
        if net.training:
            self.training_on_grid.append(torch.equal(x, (x * 255).round() / 255))
        else:
            self.last_evaluation_input = x.detach().clone()

    def check_evaluation_batch(self, batch):
        seen = self.last_evaluation_input
        assert torch.equal(seen, batch[0]), "the batch reached the net as the loader gave it"
        assert all(image[0].numpy().tobytes() in self.test_images for image in seen), "an image was changed"
        self.evaluated += len(seen)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.check_evaluation_batch(batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.check_evaluation_batch(batch)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.rng_after_first_call is None:
            self.rng_after_first_call = torch.get_rng_state()


class KeepCheckpointAt(Callback):
    """Copies last.ckpt as the call after ``step`` starts, when every save of that step is written (Lightning
    runs checkpoint callbacks after all others): a mid-epoch checkpoint to resume from."""

    def __init__(self, step: int, target: str) -> None:
        self.step, self.target = step, target

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            shutil.copy(Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt", self.target)


def run(tmp_path_factory, name: str, data_dir: Path, *overrides: str) -> dict:
    run_dir = tmp_path_factory.mktemp(name)
    watch = ["+callbacks.watch._target_=test_augment.WhatTheNetSees", f"+callbacks.watch.name={name}"]
    metrics = train(compose_config("train", [f"paths.data_dir={data_dir}", *RUN, *watch, *overrides], run_dir))
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return {
        "metrics": metrics,
        "last": last,
        "dir": run_dir,
        "rng_end": torch.get_rng_state(),
        "watcher": WATCHERS[name],
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    mid_epoch = tmp_path_factory.mktemp("kept") / "step30.ckpt"
    keep = [
        "+callbacks.keep._target_=test_augment.KeepCheckpointAt",
        "+callbacks.keep.step=30",
        f"+callbacks.keep.target={mid_epoch}",
    ]
    return {
        "affine": run(tmp_path_factory, "affine", data_dir, "augment=affine", *keep),
        "affine_again": run(tmp_path_factory, "affine_again", data_dir, "augment=affine"),
        "affine_one_step_per_call": run(tmp_path_factory, "affine_1", data_dir, "augment=affine", "stepping=lightning"),
        "resumed": run(tmp_path_factory, "resumed", data_dir, "augment=affine", f"ckpt_path={mid_epoch}"),
        "none": run(tmp_path_factory, "none", data_dir, "augment=none"),
        "absent": run(tmp_path_factory, "absent", data_dir, "~augment"),
    }


def same_training(a: dict, b: dict) -> None:
    for name, tensor in a["last"]["state_dict"].items():
        assert torch.equal(b["last"]["state_dict"][name], tensor), name
    assert a["last"]["global_step"] == b["last"]["global_step"] == 40
    for key in ("val/acc_best", "test/acc"):
        assert a["metrics"][key] == b["metrics"][key], key


@pytest.mark.slow
def test_none_trains_bit_identically_to_no_augment_group_and_draws_no_random_numbers(runs):
    same_training(runs["none"], runs["absent"])
    assert runs["none"]["last"]["hyper_parameters"]["augment"] is None
    none, absent, affine = (runs[name]["watcher"] for name in ("none", "absent", "affine"))
    assert torch.equal(none.rng_after_first_call, absent.rng_after_first_call)
    assert not torch.equal(affine.rng_after_first_call, none.rng_after_first_call), (
        "augmentation draws from the same generator, so the comparison above can fail"
    )


@pytest.mark.slow
def test_a_seeded_augmented_run_is_repeatable(runs):
    same_training(runs["affine"], runs["affine_again"])
    assert not torch.equal(
        runs["affine"]["last"]["state_dict"]["net.conv1.weight"], runs["none"]["last"]["state_dict"]["net.conv1.weight"]
    )


@pytest.mark.slow
def test_augmented_chunks_train_as_one_step_per_call(runs):
    same_training(runs["affine"], runs["affine_one_step_per_call"])


@pytest.mark.slow
def test_a_run_resumed_mid_epoch_ends_exactly_like_the_uninterrupted_one(runs):
    assert len(runs["resumed"]["watcher"].training_on_grid) == 10, "it resumed at step 30 of 40"
    same_training(runs["affine"], runs["resumed"])
    assert torch.equal(runs["resumed"]["rng_end"], runs["affine"]["rng_end"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["affine", "none"])
def test_validation_and_test_batches_reach_the_net_untouched(runs, name):
    watcher = runs[name]["watcher"]
    # The sanity check's 2 batches of 500, 4 validations of 2 batches, the test's 2 batches.
    assert watcher.evaluated == (2 + 4 * 2 + 2) * 500
    # The watcher tells augmented inputs from stored ones: 40 training steps, all augmented or none.
    assert watcher.training_on_grid == [name == "none"] * 40


@pytest.mark.slow
def test_the_augmentation_picture_is_logged_once_when_augmentation_is_on(runs):
    def images(run_dir: Path) -> list:
        accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
        accumulator.Reload()
        tags = accumulator.Tags()["images"]
        return accumulator.Images("augmentation/before_after") if "augmentation/before_after" in tags else []

    (picture,) = images(runs["affine"]["dir"])
    assert picture.step == 0 and picture.width == 16 * 29 + 1 and picture.height == 2 * 29 + 1
    assert images(runs["none"]["dir"]) == []
