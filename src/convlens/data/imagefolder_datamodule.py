"""A user's own images as training data: torchvision's ``ImageFolder``, one subfolder per class.

Either ``root/<class>/*.png``, split by index into train/validation/test with a fixed-seed permutation, or
``root/train``, ``root/val`` and ``root/test``, each holding the same class subfolders. Images become
grayscale and are resized to the model's input size. Validation and test are drawn through a
``SubsetRandomSampler``, sharded per DDP process exactly as MNIST's are (see ``sharding``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import find_classes

from convlens.data.sharding import ProcessShard
from convlens.errors import ConvlensError

SPLITS = ("train", "val", "test")
LAYOUT_HINT = "one subfolder of images per class (root/cat/1.png, root/dog/2.png)"


def checked_root(root: str | os.PathLike | None) -> Path:
    if root in (None, "", "???"):
        raise ConvlensError(f"data.root is not set; pass data.root=<a folder with {LAYOUT_HINT}>")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ConvlensError(f"data.root={path} is not an existing folder; pass data.root=<a folder with {LAYOUT_HINT}>")
    return path


def split_folders(root: Path) -> dict[str, Path] | None:
    """``{"train": root/train, "val": ..., "test": ...}`` when the user split the images; None when root holds
    the class folders directly."""
    present = [name for name in SPLITS if (root / name).is_dir()]
    if not present:
        return None
    if len(present) < len(SPLITS):
        raise ConvlensError(
            f"data.root={root} has {', '.join(n + '/' for n in present)} but not all of train/, val/ and test/; "
            f"give all three, or put {LAYOUT_HINT} directly in {root}"
        )
    return {name: root / name for name in SPLITS}


def classes_in(folder: Path) -> list[str]:
    try:
        return find_classes(str(folder))[0]
    except FileNotFoundError as error:
        raise ConvlensError(f"{folder} has no class subfolders; it needs {LAYOUT_HINT}") from error


def image_classes(root: str | os.PathLike | None) -> list[str]:
    """The class names, sorted as ``ImageFolder`` numbers them; the config reads them through a resolver."""
    path = checked_root(root)
    folders = split_folders(path)
    classes = classes_in(folders["train"] if folders else path)
    if len(classes) < 2:
        raise ConvlensError(f"{path} has only the class {classes[0]!r}; a classifier needs at least two class folders")
    for name in ("val", "test") if folders else ():
        assert folders is not None  # the loop runs only when there are split folders
        if classes_in(folders[name]) != classes:
            raise ConvlensError(
                f"{folders[name]} has classes {classes_in(folders[name])}, but train/ has {classes}; "
                "give every split the same class subfolders"
            )
    return classes


def folder_transform(image_size: int) -> transforms.Compose:
    """Grayscale, resized to the model's square input, scaled to [0, 1]: what the model is trained and asked on."""
    return transforms.Compose(
        [transforms.Grayscale(1), transforms.Resize((image_size, image_size)), transforms.ToTensor()]
    )


def load_folder(folder: Path, image_size: int) -> ImageFolder:
    try:
        return ImageFolder(str(folder), transform=folder_transform(image_size))
    except FileNotFoundError as error:
        raise ConvlensError(
            f"{folder}: {str(error).rstrip('.')}; put at least one image in every class folder"
        ) from error


class ImageFolderDataModule(LightningDataModule):
    def __init__(
        self,
        root: str,
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
        image_size: int = 28,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if not (0 < val_fraction and 0 < test_fraction and val_fraction + test_fraction < 1):
            raise ConvlensError(
                f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} must both be above 0 "
                "and leave images to train on (sum below 1); e.g. 0.1 each"
            )
        self.save_hyperparameters(logger=False)
        self.class_names = image_classes(root)
        # The config hands the model these values by interpolation; overriding them by hand would desynchronise.
        names_differ = class_names is not None and list(class_names) != self.class_names
        count_differs = num_classes is not None and num_classes != len(self.class_names)
        if names_differ or count_differs:
            raise ConvlensError(
                f"data.class_names/num_classes disagree with the {len(self.class_names)} class folders in {root} "
                f"({', '.join(self.class_names)}); leave them to the config, which reads them from the folder"
            )
        self.train_set: ImageFolder | Subset[Any] | None = None
        self.val_set: ImageFolder | None = None
        self.test_set: ImageFolder | None = None
        self.val_indices: Sequence[int] = ()
        self.test_indices: Sequence[int] = ()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        root, size = checked_root(self.hparams.root), self.hparams.image_size
        folders = split_folders(root)
        if folders:
            self.train_set, self.val_set, self.test_set = (load_folder(folders[name], size) for name in SPLITS)
            self.val_indices, self.test_indices = range(len(self.val_set)), range(len(self.test_set))
            return
        images = load_folder(root, size)
        count = len(images)
        n_val = max(1, round(count * self.hparams.val_fraction))
        n_test = max(1, round(count * self.hparams.test_fraction))
        if n_val + n_test >= count:
            raise ConvlensError(
                f"{root} has only {count} images: too few to split into train, validation and test; "
                "add images, or give root/train, root/val and root/test"
            )
        # Made here, inside each process, from a fixed seed: every DDP rank derives the same split.
        order = torch.randperm(count, generator=torch.Generator().manual_seed(self.hparams.split_seed)).tolist()
        self.val_indices, self.test_indices = order[:n_val], order[n_val : n_val + n_test]
        self.train_set = Subset(images, order[n_val + n_test :])
        self.val_set = self.test_set = images

    def _loader(self, dataset: Dataset, batch_size: int, **sampling) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self.hparams.num_workers,
            pin_memory=self.hparams.pin_memory,
            persistent_workers=self.hparams.num_workers > 0,
            **sampling,
        )

    def _train(self) -> ImageFolder | Subset[Any]:
        train_set = self.train_set
        assert train_set is not None  # setup() has run: Lightning calls it before asking for loaders or epochs
        return train_set

    def train_steps_per_epoch(self, limit: int | float | None = None) -> int:
        """Optimizer steps in one epoch of this process, cut by ``limit`` (``trainer.limit_train_batches``)."""
        return ProcessShard.of(self.trainer).train_steps_per_epoch(len(self._train()), self.hparams.batch_size, limit)

    def train_dataloader(self) -> DataLoader:
        share, train_set = ProcessShard.of(self.trainer), self._train()
        return self._loader(
            train_set,
            share.device_batch_size(self.hparams.batch_size),
            **share.train_sampling(train_set),
        )

    def val_dataloader(self) -> DataLoader:
        val_set = self.val_set
        assert val_set is not None  # setup() has run: Lightning calls it before asking for loaders
        return self._loader(
            val_set, self.hparams.eval_batch_size, sampler=ProcessShard.of(self.trainer).eval_sampler(self.val_indices)
        )

    def test_dataloader(self) -> DataLoader:
        test_set = self.test_set
        assert test_set is not None  # setup() has run: Lightning calls it before asking for loaders
        return self._loader(
            test_set,
            self.hparams.eval_batch_size,
            sampler=ProcessShard.of(self.trainer).eval_sampler(self.test_indices),
        )
