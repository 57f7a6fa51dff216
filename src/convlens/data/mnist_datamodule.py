"""MNIST as the tutorial splits it: 60,000 images train; the 10,000 test images split by index into
validation (the first ``val_size``) and test (the rest), each drawn through a ``SubsetRandomSampler``.
Under DDP each process gets its own slice of each split (see ``sharding``); ``batch_size`` stays global."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, transforms

from convlens.data.mnist_files import ensure_mnist
from convlens.data.resumable_sampling import ResumableLoader
from convlens.data.sharding import ProcessShard
from convlens.data.tensor_images import TensorImages, keep_batch
from convlens.errors import ConvlensError

MNIST_TRAIN_SIZE = 60_000
MNIST_TEST_SIZE = 10_000


class MNISTDataModule(LightningDataModule):
    def __init__(
        self,
        data_dir: str,
        batch_size: int = 64,
        eval_batch_size: int = 500,
        val_size: int = 5000,
        in_memory: bool = True,
        num_workers: int = 0,
        pin_memory: bool = True,
    ) -> None:
        super().__init__()
        if not 1 <= val_size < MNIST_TEST_SIZE:
            raise ConvlensError(
                f"data.val_size={val_size} must be between 1 and {MNIST_TEST_SIZE - 1} so that both the "
                "validation and the test half of MNIST's test set are non-empty; set data.val_size=5000"
            )
        self.save_hyperparameters(logger=False)
        self.train_set: datasets.MNIST | TensorImages | None = None
        self.test_set: datasets.MNIST | TensorImages | None = None
        self._verified = False

    @property
    def val_indices(self) -> range:
        return range(0, self.hparams.val_size)

    @property
    def test_indices(self) -> range:
        return range(self.hparams.val_size, MNIST_TEST_SIZE)

    def prepare_data(self) -> None:
        if not self._verified:  # fit and test both call this; checking 55 MB of MD5s once is enough
            ensure_mnist(self.hparams.data_dir)
            self._verified = True

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train = datasets.MNIST(self.hparams.data_dir, train=True, transform=transforms.ToTensor())
        test = datasets.MNIST(self.hparams.data_dir, train=False, transform=transforms.ToTensor())
        if self.hparams.in_memory:
            train = TensorImages(train.data, train.targets).to(self._device())
            test = TensorImages(test.data, test.targets).to(self._device())
        self.train_set, self.test_set = train, test

    def _device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _loader(
        self,
        dataset: Dataset,
        batch_size: int,
        loader: type[DataLoader] = DataLoader,
        **sampling,
    ) -> DataLoader:
        on_device = isinstance(dataset, TensorImages) and dataset.images.device.type != "cpu"
        copied_to_gpu = not on_device and self._device().type == "cuda"  # only then is pinning worth it
        collate: Callable[[Any], Any] | None = keep_batch if self.hparams.in_memory else None
        return loader(
            dataset,
            batch_size=batch_size,
            collate_fn=collate,
            num_workers=0 if on_device else self.hparams.num_workers,
            pin_memory=self.hparams.pin_memory and copied_to_gpu,
            persistent_workers=self.hparams.num_workers > 0 and not on_device,
            **sampling,
        )

    def _train(self) -> datasets.MNIST | TensorImages:
        train_set = self.train_set
        assert train_set is not None  # setup() has run: Lightning calls it before asking for loaders or epochs
        return train_set

    def _test(self) -> datasets.MNIST | TensorImages:
        test_set = self.test_set
        assert test_set is not None  # setup() has run: Lightning calls it before asking for loaders
        return test_set

    def train_steps_per_epoch(self, limit: int | float | None = None) -> int:
        """Optimizer steps in one epoch of this process, cut by ``limit`` (``trainer.limit_train_batches``)."""
        return ProcessShard.of(self.trainer).train_steps_per_epoch(len(self._train()), self.hparams.batch_size, limit)

    def train_dataloader(self) -> DataLoader:
        share, train_set = ProcessShard.of(self.trainer), self._train()
        # Resumable mid-epoch from a checkpoint, in the same order (exactly so in a single process).
        return self._loader(
            train_set,
            share.device_batch_size(self.hparams.batch_size),
            loader=ResumableLoader,
            **share.train_sampling(train_set),
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader(
            self._test(),
            self.hparams.eval_batch_size,
            sampler=ProcessShard.of(self.trainer).eval_sampler(self.val_indices),
        )

    def test_dataloader(self) -> DataLoader:
        return self._loader(
            self._test(),
            self.hparams.eval_batch_size,
            sampler=ProcessShard.of(self.trainer).eval_sampler(self.test_indices),
        )
