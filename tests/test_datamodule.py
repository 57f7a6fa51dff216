import pytest
import torch
from torch.utils.data import DataLoader, SubsetRandomSampler
from torchvision import datasets, transforms

from convlens.data.epoch_length import train_steps_per_epoch
from convlens.data.mnist_datamodule import MNISTDataModule
from convlens.data.tensor_images import TensorImages, keep_batch
from convlens.errors import ConvlensError


@pytest.fixture(scope="module")
def datamodule(data_dir):
    dm = MNISTDataModule(str(data_dir))
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_split_is_60000_train_and_the_test_set_halved_by_index(datamodule):
    assert len(datamodule.train_set) == 60_000
    assert len(datamodule.test_set) == 10_000
    val = set(datamodule.val_dataloader().sampler.indices)
    test = set(datamodule.test_dataloader().sampler.indices)
    assert val == set(range(5000)) and test == set(range(5000, 10_000))
    assert not val & test


def test_val_and_test_are_sampled_randomly_and_completely(datamodule):
    loader = datamodule.val_dataloader()
    assert isinstance(loader.sampler, SubsetRandomSampler)
    labels = torch.cat([y for _, y in loader])
    assert len(labels) == 5000
    reference = datasets.MNIST(datamodule.hparams.data_dir, train=False)
    assert torch.equal(labels.sort().values, reference.targets[:5000].sort().values)


def test_train_batches_are_shuffled_batches_of_64(datamodule):
    x, y = next(iter(datamodule.train_dataloader()))
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(datamodule.train_dataloader()) == 938


def test_in_memory_batches_equal_to_tensor_bit_for_bit(data_dir):
    reference = datasets.MNIST(str(data_dir), train=False, transform=transforms.ToTensor())
    in_memory = TensorImages(reference.data, reference.targets)
    indices = [100, 0, 9999, 5000]
    x, y = in_memory.__getitems__(indices)
    expected = torch.stack([reference[i][0] for i in indices])
    assert torch.equal(x, expected)
    assert y.tolist() == [reference[i][1] for i in indices]
    assert torch.equal(in_memory[100][0], reference[100][0]) and in_memory[100][1] == reference[100][1] == 6


def test_in_memory_loader_keeps_the_sampler_order(data_dir):
    reference = datasets.MNIST(str(data_dir), train=False, transform=transforms.ToTensor())
    in_memory = TensorImages(reference.data, reference.targets)
    batches = []
    for dataset, collate in ((reference, None), (in_memory, keep_batch)):
        torch.manual_seed(3)
        loader = DataLoader(dataset, batch_size=50, sampler=SubsetRandomSampler(range(200)), collate_fn=collate)
        batches.append(list(loader))
    for (xa, ya), (xb, yb) in zip(*batches, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("val_size", [0, 10_000, -5])
def test_val_size_outside_the_test_set_is_refused(val_size, tmp_path):
    with pytest.raises(ConvlensError, match="data.val_size"):
        MNISTDataModule(str(tmp_path), val_size=val_size)


def test_val_size_moves_the_boundary(data_dir):
    dm = MNISTDataModule(str(data_dir), val_size=1000)
    assert dm.val_indices == range(0, 1000) and dm.test_indices == range(1000, 10_000)


def test_limits_are_read_as_lightning_reads_them():
    assert train_steps_per_epoch(60_000, 64, limit=None) == 938
    assert train_steps_per_epoch(60_000, 64, limit=40) == 40
    assert train_steps_per_epoch(60_000, 64, limit=5000) == 938
    assert train_steps_per_epoch(60_000, 64, limit=0.5) == 469


def test_an_epoch_under_ddp_counts_each_process_s_padded_shard():
    assert train_steps_per_epoch(60_000, 64, world_size=2) == 938  # 30,000 images each, batches of 32
    assert train_steps_per_epoch(101, 10, world_size=2) == 11  # 51 each (one padded), batches of 5
