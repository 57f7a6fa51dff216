"""What ``src/visualize.py`` does: a checkpoint's kernels and one image's feature maps, drawn as titled PNGs."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.markup import escape

from convlens.data.own_images import load_digit
from convlens.errors import ConvlensError
from convlens.models.from_checkpoint import load_classifier, resolve_checkpoint
from convlens.pictures import draw
from convlens.startup.config_checks import check_settings
from convlens.startup.run_log import log_config, print_and_log
from convlens.tasks.train import prepare_process, training_runs


def chosen_image(cfg: DictConfig) -> tuple[torch.Tensor, str]:
    """The (1, 28, 28) input and how to name it: the user's image if given, else MNIST test image ``index``."""
    if cfg.get("image"):
        path = Path(cfg.image)
        return load_digit(path, **cfg.preprocess), path.name
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("test")
    test_set = datamodule.test_set
    if not 0 <= int(cfg.index) < len(test_set):
        raise ConvlensError(
            f"index={cfg.index} is outside MNIST's test set (0..{len(test_set) - 1}); "
            "pass index=100, say, or image=<your digit.png>"
        )
    image, label = test_set[int(cfg.index)]
    return image.cpu(), f"test image {cfg.index} (a {label})"


def output_folder(cfg: DictConfig) -> Path:
    """``out_dir``; a relative one lies inside this run's folder, so pictures never land in the checkout."""
    out_dir = Path(cfg.out_dir).expanduser()
    return out_dir if out_dir.is_absolute() else Path(cfg.paths.output_dir) / out_dir


def visualize(cfg: DictConfig) -> dict[str, Path]:
    """Write the kernels and feature-map PNGs into ``cfg.out_dir``; return them by name."""
    log_config(cfg)
    check_settings(cfg)
    prepare_process(cfg)
    model = load_classifier(resolve_checkpoint(cfg.ckpt_path, training_runs(cfg))).eval()
    image, name = chosen_image(cfg)
    with torch.no_grad():
        probabilities = model(image[None]).exp()[0]
        conv1_maps, conv2_maps = model.net.features(image[None])
    digit = int(probabilities.argmax())
    prediction = f"predicted {digit} ({float(probabilities[digit]):.2%})"
    style = instantiate(cfg.picture)
    drawn = {  # file name: (title, picture); the kernels do not depend on the image, so their titles skip its name
        "kernels_conv1": (f"conv1 kernels · {prediction}", draw.conv1_kernels(model.net.conv1.weight, style)),
        "kernels_conv2": (
            f"conv2 kernels, a row per input channel · {prediction}",
            draw.conv2_kernels(model.net.conv2.weight, style),
        ),
        "feature_maps_conv1": (f"conv1 feature maps · {name}: {prediction}", draw.feature_maps(conv1_maps, style)),
        "feature_maps_conv2": (f"conv2 feature maps · {name}: {prediction}", draw.feature_maps(conv2_maps, style)),
        "input": (prediction, draw.input_images(image[None], style)),
    }
    out_dir = output_folder(cfg)
    written = {
        key: draw.save_png(draw.titled(picture, title, style), out_dir / f"{key}.png")
        for key, (title, picture) in drawn.items()
    }
    print_and_log(f"{escape(name)}: {prediction}; pictures in {escape(str(out_dir))}")
    return written
