"""data=imagefolder: a folder of real MNIST digits saved as PNGs, split by index or by subfolders."""

import shutil

import pytest
from hydra.utils import instantiate
from torch.utils.data import SubsetRandomSampler

from conftest import compose_config
from convlens.data.imagefolder_datamodule import ImageFolderDataModule, image_classes
from convlens.errors import ConvlensError
from convlens.startup.run_task import report_errors
from convlens.tasks.train import train
from digit_folders import write_digit_folder

NAMES = ["one", "two", "zero"]


@pytest.fixture(scope="module")
def digit_folder(data_dir, tmp_path_factory):
    return write_digit_folder(data_dir, tmp_path_factory.mktemp("digits"), per_class=40)


def test_split_by_index_is_fixed_disjoint_and_complete(digit_folder):
    first, second = ImageFolderDataModule(str(digit_folder)), ImageFolderDataModule(str(digit_folder))
    for dm in (first, second):
        dm.setup("fit")
    assert first.class_names == NAMES
    val, test, train_part = set(first.val_indices), set(first.test_indices), set(first.train_set.indices)
    assert (len(val), len(test), len(train_part)) == (12, 12, 96)
    assert val | test | train_part == set(range(120)) and not (val & test or val & train_part or test & train_part)
    assert first.val_indices == second.val_indices and first.test_indices == second.test_indices
    loader = first.val_dataloader()
    assert isinstance(loader.sampler, SubsetRandomSampler) and sorted(loader.sampler.indices) == sorted(val)
    x, y = next(iter(loader))
    assert x.shape == (12, 1, 28, 28) and x.max() <= 1 and set(y.tolist()) <= {0, 1, 2}


def test_train_val_test_subfolders_are_used_when_present(digit_folder, tmp_path):
    for split in ("train", "val", "test"):
        shutil.copytree(digit_folder, tmp_path / split)
    for extra in (tmp_path / "val" / "zero").iterdir():
        extra.unlink()
        break
    dm = ImageFolderDataModule(str(tmp_path), image_size=32)
    dm.setup("fit")
    assert len(dm.train_set) == 120 and len(dm.val_set) == 119 and list(dm.test_indices) == list(range(120))
    assert dm.train_set[0][0].shape == (1, 32, 32)


def test_class_names_and_count_reach_the_model_through_the_config(digit_folder, tmp_path):
    cfg = compose_config("train", ["data=imagefolder", f"data.root={digit_folder}"], tmp_path)
    assert cfg.model.net.num_classes == 3 and list(cfg.model.class_names) == NAMES
    model = instantiate(cfg.model)
    assert model.net.fc2.out_features == 3 and model.hparams.class_names == NAMES
    assert instantiate(cfg.data).class_names == NAMES
    mnist = compose_config("train", [], tmp_path)
    assert mnist.model.net.num_classes == 10 and mnist.model.class_names is None


def test_bad_folders_are_named_in_one_sentence(digit_folder, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "one-class" / "cats").mkdir(parents=True)
    (tmp_path / "no-images" / "a").mkdir(parents=True)
    (tmp_path / "no-images" / "b").mkdir()
    (tmp_path / "no-images" / "b" / "notes.txt").write_text("not an image")
    (tmp_path / "half-split" / "val").mkdir(parents=True)
    cases = {
        None: "data.root is not set",
        tmp_path / "missing": "is not an existing folder",
        tmp_path / "empty": "has no class subfolders",
        tmp_path / "one-class": "at least two class folders",
        tmp_path / "half-split": "not all of train/, val/ and test/",
    }
    for root, message in cases.items():
        with pytest.raises(ConvlensError, match=message):
            image_classes(root)
    with pytest.raises(ConvlensError, match="put at least one image in every class folder"):
        ImageFolderDataModule(str(tmp_path / "no-images")).setup("fit")
    with pytest.raises(ConvlensError, match="val_fraction"):
        ImageFolderDataModule(str(digit_folder), val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ConvlensError, match="disagree"):
        ImageFolderDataModule(str(digit_folder), num_classes=10)


def test_a_missing_folder_fails_training_in_one_line(tmp_path, capsys):
    cfg = compose_config("train", ["data=imagefolder", f"data.root={tmp_path / 'nope'}", "trainer=cpu"], tmp_path)
    with pytest.raises(SystemExit) as exit_:
        report_errors(lambda: train(cfg))  # the resolver's error reaches the user through OmegaConf and Hydra
    assert exit_.value.code == 1
    assert capsys.readouterr().err.strip() == (
        f"error: data.root={tmp_path / 'nope'} is not an existing folder; pass data.root=<a folder with one "
        "subfolder of images per class (root/cat/1.png, root/dog/2.png)>"
    )
