"""What ``src/export.py`` does: a checkpoint's network as one portable file, with a JSON beside it saying what the
file expects. The file is checked before it is reported: run back (by onnxruntime, or as the loaded exported
program) on real test images, it must give the checkpoint's outputs within ``tolerance`` and the same predicted
classes; otherwise the command fails and leaves no file behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.markup import escape

from convlens.errors import ConvlensError
from convlens.export.formats import INPUT, OUTPUT, chosen_format
from convlens.faults.atomic_files import replaced_atomically
from convlens.models.classifier import ConvNetClassifier
from convlens.models.from_checkpoint import load_classifier, resolve_checkpoint
from convlens.startup.config_checks import check_settings
from convlens.startup.run_log import log_config, print_and_log
from convlens.tasks.predict import class_names, conversion_for
from convlens.tasks.train import training_runs
from convlens.tasks.visualize import output_folder

FILE_STEM = "convnet"  # <out_dir>/convnet.onnx or convnet.pt2, and convnet.<suffix>.json beside it


def input_shape(model: ConvNetClassifier) -> tuple[int, int, int]:
    net = model.hparams.net
    size = int(net.get("image_size", 28))
    return int(net.get("in_channels", 1)), size, size


def checking_images(cfg: DictConfig, model: ConvNetClassifier) -> torch.Tensor:
    """The first ``check_images`` images of the data's test split, (N, C, H, W) in [0, 1] as training saw them."""
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("test")
    indices = list(datamodule.test_indices)[: int(cfg.check_images)]
    images = torch.stack([datamodule.test_set[index][0] for index in indices]).cpu()
    if tuple(images.shape[1:]) != input_shape(model):
        raise ConvlensError(
            f"the checkpoint takes images of shape {input_shape(model)} but the data's test images "
            f"are {tuple(images.shape[1:])}; export a folder-trained checkpoint with "
            "data=imagefolder data.root=<the folder it was trained on>"
        )
    return images


def agreement(expected: torch.Tensor, got: torch.Tensor) -> tuple[float, int]:
    """The largest absolute difference between the two outputs, and how many images' predicted classes differ."""
    return float((expected - got).abs().max()), int((expected.argmax(1) != got.argmax(1)).sum())


def expectations(
    cfg: DictConfig, model: ConvNetClassifier, ckpt_path: Path, file: Path, check: dict[str, Any]
) -> dict[str, Any]:
    """The JSON beside the file: what goes in and comes out, and how a picture becomes the input (as predict.py)."""
    channels, height, width = input_shape(model)
    conversion = conversion_for(model, "auto")
    how = {
        "digit": "src/predict.py's digit conversion (convlens.data.own_images.load_digit): grayscale, light "
        "digit on dark, fitted into digit_box and centred by its centre of mass",
        "resize": "grayscale, resized to the input's sides (as data=imagefolder trains)",
    }[conversion]
    return {
        "format": cfg.format,
        "file": file.name,
        "checkpoint": str(ckpt_path),
        "input": {
            "name": INPUT,
            "shape": ["batch", channels, height, width],
            "dtype": "float32",
            "layout": "NCHW",
            "values": "0 (black) to 1 (white): the pixel value / 255, with no mean or std subtracted",
        },
        "preprocess": {
            "conversion": conversion,
            "how": how,
            **({"settings": OmegaConf.to_container(cfg.preprocess)} if conversion == "digit" else {}),
        },
        "output": {
            "name": OUTPUT,
            "shape": ["batch", len(class_names(model))],
            "values": "log-probabilities (log-softmax); exp gives each class's probability",
        },
        "class_names": class_names(model),
        "check": check,
    }


def export(cfg: DictConfig) -> dict[str, Any]:
    """Write the network in ``cfg.format`` and its JSON into ``cfg.out_dir`` once it has passed the check."""
    log_config(cfg)
    check_settings(cfg)
    chosen = chosen_format(cfg.format)  # a missing extra is refused before anything slow
    ckpt_path = resolve_checkpoint(cfg.ckpt_path, training_runs(cfg))
    model = load_classifier(ckpt_path).eval()
    images = checking_images(cfg, model)
    with torch.no_grad():
        expected = model(images)
    tolerance = float(cfg.tolerance)
    file = output_folder(cfg) / f"{FILE_STEM}{chosen.suffix}"
    file.parent.mkdir(parents=True, exist_ok=True)
    # Written under its own name (torch.export.load wants the .pt2) in a hidden folder beside it, and moved into
    # place once it has passed the check: a file that fails never appears.
    with tempfile.TemporaryDirectory(dir=file.parent, prefix=".export-") as folder:
        written = Path(folder) / file.name
        chosen.write(model.net, images[:1].repeat(2, 1, 1, 1), written)  # a batch of 2: 1 would fix the size
        difference, differing = agreement(expected, chosen.run(written, images))
        if difference > tolerance or differing:
            raise ConvlensError(
                f"the {cfg.format} export of {ckpt_path} disagrees with the checkpoint on {len(images)} test images "
                f"(max abs difference {difference:.3g}, allowed {tolerance:g}; {differing} predicted classes "
                "differ), so nothing was written; report it with the torch and onnxruntime versions"
            )
        os.replace(written, file)
    check = {
        "test_images": len(images),
        "max_abs_difference": difference,
        "tolerance": tolerance,
        "same_predicted_classes": True,
    }
    sidecar = file.with_name(file.name + ".json")
    with replaced_atomically(sidecar) as temporary:
        temporary.write_text(json.dumps(expectations(cfg, model, ckpt_path, file, check), indent=2) + "\n")
    print_and_log(
        f"{cfg.format}: on {len(images)} test images the file gives the checkpoint's outputs within "
        f"[bold]{difference:.2e}[/bold] (max abs difference, allowed {tolerance:g}) and the same predicted classes "
        f"→ {escape(str(file))}, what it expects in {escape(sidecar.name)}",
        soft_wrap=True,
        highlight=False,
    )
    return {"file": file, "sidecar": sidecar, **check}
