"""A user's image becomes an MNIST-style input; every bad file gets a one-line error.

Files are real, made with Pillow."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image, ImageDraw
from torchvision import datasets

from convlens.data.own_images import load_digit
from convlens.errors import ConvlensError
from convlens.startup.run_task import PROJECT_ROOT

PREPROCESS = dict(OmegaConf.load(PROJECT_ROOT / "conf" / "preprocess" / "mnist.yaml"))


def load(path: Path, **changes) -> torch.Tensor:
    return load_digit(path, **{**PREPROCESS, **changes})


@pytest.fixture(scope="module")
def mnist_test(data_dir) -> datasets.MNIST:
    return datasets.MNIST(str(data_dir), train=False)


@pytest.fixture(scope="module")
def six(mnist_test) -> np.ndarray:
    """MNIST test image 100 (a 6) as uint8, light on dark."""
    assert int(mnist_test.targets[100]) == 6
    return mnist_test.data[100].numpy()


@pytest.fixture(scope="module")
def other_digits(mnist_test) -> list[np.ndarray]:
    """The first ten test digits that are not 6s, to show the comparison with the 6 is not trivially high."""
    return [image.numpy() for image, label in zip(mnist_test.data, mnist_test.targets, strict=True) if label != 6][:10]


def on_paper(digit: np.ndarray, scale: int = 10, paper=(300, 420), at=(40, 150)) -> Image.Image:
    """The digit as a scan would show it: dark ink, enlarged, off-centre on a larger light page."""
    ink = Image.fromarray(255 - digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    page = Image.new("L", paper[::-1], 255)
    page.paste(ink, at[::-1])
    return page


def correlation(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.corrcoef(a.flatten().numpy(), b.flatten().astype(np.float32))[0, 1])


def assert_is(digit: torch.Tensor, original: np.ndarray, others: list[np.ndarray]) -> None:
    """Much closer to the original MNIST digit than to any other digit."""
    assert digit.shape == (1, 28, 28) and digit.dtype == torch.float32
    closest_other = max(correlation(digit, other) for other in others)
    assert correlation(digit, original) > max(0.8, closest_other + 0.2)


def centre_of_mass(image: torch.Tensor) -> tuple[float, float]:
    pixels = image[0].numpy()
    rows, cols = np.indices(pixels.shape)
    return float((rows * pixels).sum() / pixels.sum()), float((cols * pixels).sum() / pixels.sum())


def test_a_scanned_mnist_digit_comes_back_as_the_mnist_digit(six, other_digits, tmp_path):
    path = tmp_path / "six.png"
    on_paper(six).save(path)
    digit = load(path)
    assert digit.min() == 0 and digit.max() == 1
    assert_is(digit, six, other_digits)


def test_the_digit_fits_the_box_and_is_centred_by_mass(tmp_path):
    page = Image.new("L", (500, 200), 230)  # grey paper, a wide dark bar near the left edge
    ImageDraw.Draw(page).rectangle([10, 60, 170, 100], fill=20)
    path = tmp_path / "bar.png"
    page.save(path)
    digit = load(path)[0]
    rows, cols = np.nonzero(digit.numpy() > 0.5)
    assert cols.max() - cols.min() + 1 == 20  # the longer side fills the 20-pixel box
    assert 4 <= rows.max() - rows.min() + 1 <= 6  # the aspect ratio (160:40) is kept
    assert centre_of_mass(digit[None]) == pytest.approx((14.0, 14.0), abs=0.5)  # where MNIST's lie


def test_light_digit_on_dark_is_not_inverted(six, other_digits, tmp_path):
    path = tmp_path / "six_dark.png"
    Image.fromarray(six).resize((140, 140), Image.Resampling.BICUBIC).save(path)
    assert_is(load(path), six, other_digits)


def test_jpeg_photo_in_colour(six, other_digits, tmp_path):
    page = on_paper(six).convert("RGB")
    tinted = Image.merge(
        "RGB", [band.point(lambda v, k=k: v * k) for band, k in zip(page.split(), (1.0, 0.95, 0.8), strict=True)]
    )
    path = tmp_path / "six.jpg"
    tinted.save(path, quality=70)
    assert_is(load(path), six, other_digits)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(six, other_digits, tmp_path):
    page = np.asarray(on_paper(six), dtype=np.uint16) * 257  # full 16-bit range
    image = Image.fromarray(page)
    assert image.mode == "I;16"
    path = tmp_path / "six16.png"
    image.save(path)
    assert Image.open(path).mode.startswith("I")
    assert_is(load(path), six, other_digits)


def test_cmyk_is_converted(six, other_digits, tmp_path):
    path = tmp_path / "six_cmyk.jpg"
    on_paper(six).convert("CMYK").save(path)
    assert Image.open(path).mode == "CMYK"
    assert_is(load(path), six, other_digits)


@pytest.mark.parametrize("ink_colour", [(0, 0, 0), (255, 255, 255)], ids=["dark ink", "light ink"])
def test_transparent_background_uses_the_strokes(six, other_digits, tmp_path, ink_colour):
    """A digit drawn on a transparent layer: only alpha tells the strokes apart, whatever their colour."""
    alpha = Image.fromarray(six).resize((112, 112), Image.Resampling.BICUBIC)
    layer = Image.new("RGBA", alpha.size, (*ink_colour, 0))
    layer.putalpha(alpha)
    path = tmp_path / "six_rgba.png"
    layer.save(path)
    assert_is(load(path), six, other_digits)


def error_for(path: Path, **changes) -> str:
    with pytest.raises(ConvlensError) as caught:
        load(path, **changes)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


def test_fully_transparent_image_is_refused(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (50, 50), (0, 0, 0, 0)).save(path)
    assert "fully transparent" in error_for(path)


def test_blank_image_is_refused(tmp_path):
    path = tmp_path / "blank.png"
    page = Image.new("L", (60, 40), 200)
    ImageDraw.Draw(page).point([(30, 20)], fill=190)  # a faint speck is not a digit
    page.save(path)
    assert "looks blank" in error_for(path)


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "digit.png"
    path.write_text("a six, drawn in words\n")
    assert "is not an image" in error_for(path)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.png"
    empty.touch()
    assert "empty file" in error_for(empty)
    assert "does not exist" in error_for(tmp_path / "nowhere.png")


def test_truncated_image_is_refused(six, tmp_path):
    path = tmp_path / "cut.png"
    on_paper(six).save(path)
    path.write_bytes(path.read_bytes()[:200])
    assert "truncated or corrupt" in error_for(path)


def test_too_many_pixels_is_refused_from_the_header_alone(six, tmp_path):
    """The file is cut after its header: refusing it by size proves no pixel was decoded."""
    path = tmp_path / "large.png"
    on_paper(six).save(path)
    path.write_bytes(path.read_bytes()[:100])
    message = error_for(path, max_pixels=10_000)
    assert "420x300" in message and "preprocess.max_pixels" in message


def png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(b""))


def test_a_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(40_000, 40_000))  # 1.6 gigapixels claimed by a 53-byte file
    assert "scale it down" in error_for(path)
