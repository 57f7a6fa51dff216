"""The picture-making functions on small tensors: colours, layout, sizes, titles, curves."""

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_config
from convlens.errors import ConvlensError
from convlens.pictures import draw
from convlens.pictures.draw import PictureStyle
from convlens.startup.run_task import CONFIG_DIR

STYLE = PictureStyle(tile_px=80, separator_px=2, colormap="viridis", title_px=24)
WHITE = torch.ones(3)


def side(tiles: int, tile_px: int, separator_px: int = 2) -> int:
    """make_grid's length: a separator before every tile and one after the last."""
    return tiles * (tile_px + separator_px) + separator_px


def tile(picture: torch.Tensor, row: int, column: int, tile_px: int) -> torch.Tensor:
    top, left = 2 + row * (tile_px + 2), 2 + column * (tile_px + 2)
    return picture[:, top : top + tile_px, left : left + tile_px]


@pytest.mark.parametrize("option", sorted(p.stem for p in (Path(CONFIG_DIR) / "picture").glob("*.yaml")))
def test_visualize_config_composes_and_builds_the_style(option, tmp_path):
    cfg = compose_config("visualize", ["ckpt_path=some.ckpt", f"picture={option}"], tmp_path)
    assert set(cfg.preprocess) == {"size", "digit_box", "max_pixels", "min_contrast", "ink_threshold"}
    assert isinstance(instantiate(cfg.picture), PictureStyle)


def test_the_default_style_is_the_one_tested_here(tmp_path):
    cfg = compose_config("train", [], tmp_path)
    assert instantiate(cfg.callbacks.convnet_pictures.style) == STYLE


def test_each_map_is_scaled_by_its_own_range():
    base = torch.rand(5, 5)
    colours = draw.coloured(torch.stack([base, 10 * base - 3, torch.full((5, 5), 7.0)]), "viridis")
    assert colours.shape == (3, 3, 5, 5) and 0 <= colours.min() and colours.max() <= 1
    assert torch.allclose(colours[0], colours[1], atol=1e-6)
    viridis_low = torch.tensor(matplotlib.colormaps["viridis"](0.0)[:3], dtype=torch.float32)
    assert torch.allclose(colours[2], viridis_low.view(3, 1, 1).expand(3, 5, 5))  # a flat map is not an error


def test_small_maps_become_crisp_tiles_of_at_least_the_tile_size():
    maps = torch.rand(4, 5, 5)
    picture = draw.grid(maps, columns=4, style=STYLE)
    assert picture.shape == (3, side(1, 80), side(4, 80))
    first = tile(picture, 0, 0, 80)
    blocks = first.unfold(1, 16, 16).unfold(2, 16, 16)  # (3, 5, 5, 16, 16): one block per kernel pixel
    assert torch.equal(blocks, blocks[..., :1, :1].expand_as(blocks))  # nearest-neighbour: every block is flat
    assert torch.equal(picture[:, :, 82:84], WHITE.view(3, 1, 1).expand(3, side(1, 80), 2))  # a white separator


def test_tile_size_is_a_whole_enlargement_reaching_the_configured_side():
    assert draw.grid(torch.rand(1, 28, 28), 1, STYLE).shape[-1] == 84  # 3x
    assert draw.grid(torch.rand(1, 14, 14), 1, STYLE).shape[-1] == 84  # 6x
    assert draw.grid(torch.rand(1, 100, 100), 1, STYLE).shape[-1] == 100  # never shrunk


def test_conv1_kernels_side_by_side():
    weight = torch.randn(4, 1, 5, 5)
    picture = draw.conv1_kernels(weight, STYLE)
    assert picture.shape == (3, side(1, 80), side(4, 80))
    for k in range(4):
        assert torch.equal(tile(picture, 0, k, 80), draw.grid(weight[k], 1, STYLE))


def test_conv2_kernels_one_column_per_kernel_one_row_per_input_channel():
    weight = torch.randn(8, 4, 5, 5)
    picture = draw.conv2_kernels(weight, STYLE)
    assert picture.shape == (3, side(4, 80), side(8, 80))
    for kernel in range(8):
        for channel in range(4):
            assert torch.equal(tile(picture, channel, kernel, 80), draw.grid(weight[kernel, channel][None], 1, STYLE))


def test_feature_maps_one_row_per_image():
    activations = torch.rand(2, 8, 14, 14)
    picture = draw.feature_maps(activations, STYLE)
    assert picture.shape == (3, side(2, 84), side(8, 84))
    assert torch.equal(tile(picture, 1, 5, 84), draw.grid(activations[1, 5][None], 1, STYLE))


def test_titled_adds_a_band_with_the_text_above_the_picture():
    picture = draw.conv1_kernels(torch.randn(4, 1, 5, 5), STYLE)
    image = draw.titled(picture, "conv1 kernels · predicted 6 (99.97%)", STYLE)
    assert image.size == (side(4, 80), side(1, 80) + 24)
    pixels = np.asarray(image)
    assert pixels[:24].min() < 100  # dark text was drawn on the white band
    assert np.array_equal(pixels[24:], np.asarray(draw.to_pil(picture)))


def test_error_curves_plot_both_series_against_checks():
    figure = draw.error_curves([9.0, 5.0, 3.0], [10.0, 6.0, 4.5], checks_label="validation check")
    (axes,) = figure.axes
    train, val = axes.get_lines()
    assert list(train.get_xdata()) == [1, 2, 3] and list(train.get_ydata()) == [9.0, 5.0, 3.0]
    assert list(val.get_ydata()) == [10.0, 6.0, 4.5]
    picture = draw.rendered(figure)
    assert picture.shape == (3, 400, 600) and 0 <= picture.min() and picture.max() <= 1
    assert picture[:, 0, 0].tolist() == [1.0, 1.0, 1.0]  # white background, drawn without a display


def test_a_bad_style_is_a_one_line_error():
    with pytest.raises(ConvlensError, match="picture.colormap=not-a-colormap is not a matplotlib colour map"):
        PictureStyle(tile_px=80, separator_px=2, colormap="not-a-colormap", title_px=24)
    with pytest.raises(ConvlensError, match="picture.tile_px=0"):
        PictureStyle(tile_px=0, separator_px=2, colormap="viridis", title_px=24)
