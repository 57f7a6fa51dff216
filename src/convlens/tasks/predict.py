"""What ``src/predict.py`` does: classify a user's images with a checkpoint, as a table and ``predictions.csv``.

A file that cannot be read does not stop the others: it becomes a row with the reason, and once every image
is done and the CSV is written the command fails (exit 1), so a script notices that something was skipped.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from omegaconf import DictConfig, ListConfig
from PIL import Image
from rich.markup import escape
from rich.table import Table

from convlens.data.imagefolder_datamodule import folder_transform
from convlens.data.own_images import load_digit, open_checked
from convlens.errors import ConvlensError
from convlens.models.classifier import ConvNetClassifier
from convlens.models.from_checkpoint import load_classifier, resolve_checkpoint
from convlens.startup.config_checks import check_settings
from convlens.startup.run_log import log_config, print_and_log
from convlens.tasks.train import prepare_process, training_runs

CONVERSIONS = ("auto", "digit", "resize")


@dataclass
class Prediction:
    image: Path
    classes: list[str] = field(default_factory=list)  # best first
    probabilities: list[float] = field(default_factory=list)
    error: str = ""


def folder_images(folder: Path) -> tuple[list[Path], dict[Path, str]]:
    """The folder's files of a type Pillow reads (what one ``images=<file>`` accepts), sorted; and every other
    entry, with why it is skipped."""
    Image.init()  # registers every format Pillow has, GIF and WebP among them
    readable = set(Image.registered_extensions())
    found, skipped = [], {}
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            skipped[entry] = "a folder (images= does not look inside subfolders)"
        elif entry.suffix.lower() not in readable:
            skipped[entry] = f"not an image type Pillow reads ({entry.suffix or 'no extension'})"
        else:
            found.append(entry)
    return found, skipped


def image_paths(images: str | os.PathLike | Sequence | None) -> tuple[list[Path], dict[Path, str]]:
    """``images=`` as files: one file, a list, or a folder's image files (sorted, not recursing); and the
    folder's entries that were skipped, with why."""
    if images in (None, "", "???") or (isinstance(images, (list, ListConfig)) and not images):
        raise ConvlensError("no images given; pass images=<file>, images=[a.png,b.png] or images=<folder>")
    if isinstance(images, (list, ListConfig)):
        return [Path(str(image)).expanduser() for image in images], {}
    assert isinstance(images, (str, os.PathLike))  # None, empty and lists are handled above
    path = Path(images).expanduser()
    if not path.is_dir():
        return [path], {}  # a missing file is reported in its row, like any other unreadable one
    found, skipped = folder_images(path)
    if not found:
        raise ConvlensError(
            f"{path} holds no file of an image type Pillow reads (.png, .jpg, .gif, ...); "
            "pass images=<a folder of images, a file, or [a.png,b.png]>"
        )
    return found, skipped


def conversion_for(model: ConvNetClassifier, convert: str) -> str:
    """``auto``: MNIST checkpoints get the MNIST digit treatment; folder-trained ones (they carry class names)
    get the resize they were trained with."""
    if convert not in CONVERSIONS:
        raise ConvlensError(f"convert={convert} is not one of {', '.join(CONVERSIONS)}; use convert=auto")
    if convert != "auto":
        return convert
    return "resize" if model.hparams.get("class_names") else "digit"


def load_image(path: Path, conversion: str, image_size: int, preprocess: DictConfig) -> torch.Tensor:
    """(1, image_size, image_size) in [0, 1]; unreadable files raise the one-line errors of
    ``convlens.data.own_images``."""
    if conversion == "digit":
        settings = cast("Mapping[str, Any]", preprocess)  # OmegaConf types keys loosely; these are conf/'s names
        return load_digit(path, **{**settings, "size": image_size})
    with open_checked(path, int(preprocess.max_pixels)) as image:
        return folder_transform(image_size)(image.convert("RGB"))  # as ImageFolder loads and transforms


def class_names(model: ConvNetClassifier) -> list[str]:
    names = model.hparams.get("class_names")
    return list(names) if names else [str(index) for index in range(model.net.fc2.out_features)]


def classify(
    model: ConvNetClassifier, paths: list[Path], conversion: str, preprocess: DictConfig, top_k: int, batch_size: int
) -> list[Prediction]:
    names = class_names(model)
    image_size = int(model.hparams.net.get("image_size", 28))
    predictions, readable, inputs = [], [], []
    for path in paths:
        prediction = Prediction(path)
        try:
            inputs.append(load_image(path, conversion, image_size, preprocess))
            readable.append(prediction)
        except ConvlensError as error:
            prediction.error = str(error)
        predictions.append(prediction)
    k = min(top_k, len(names))
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            probabilities = model(torch.stack(inputs[start : start + batch_size])).exp()
            best = probabilities.topk(k, dim=1)
            for prediction, values, indices in zip(
                readable[start : start + batch_size], best.values, best.indices, strict=True
            ):
                prediction.classes = [names[int(i)] for i in indices]
                prediction.probabilities = [float(v) for v in values]
    return predictions


def write_csv(predictions: list[Prediction], top_k: int, path: Path) -> Path:
    """One row per image: the class and its probability, then the runners-up, then the error if unreadable."""
    extra = [column for rank in range(2, top_k + 1) for column in (f"class_{rank}", f"probability_{rank}")]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "class", "probability", *extra, "error"])
        for p in predictions:
            ranked = [
                value for pair in zip(p.classes, (f"{q:.6f}" for q in p.probabilities), strict=True) for value in pair
            ]
            writer.writerow([str(p.image), *ranked, *[""] * (2 * top_k - len(ranked)), p.error])
    return path


def show(predictions: list[Prediction], top_k: int) -> None:
    table = Table("image", "class", "probability", f"top {top_k}")
    for p in predictions:
        if p.error:
            table.add_row(escape(p.image.name), "[red]error", "", f"[red]{escape(p.error)}")
        else:
            ranked = ", ".join(f"{name} {q:.1%}" for name, q in zip(p.classes, p.probabilities, strict=True))
            table.add_row(
                escape(p.image.name), f"[bold]{escape(p.classes[0])}", f"{p.probabilities[0]:.1%}", escape(ranked)
            )
    print_and_log(table)


def predict(cfg: DictConfig) -> list[Prediction]:
    """Classify ``cfg.images``, print the table, write ``predictions.csv``; fail at the end if any was unreadable."""
    log_config(cfg)
    check_settings(cfg)
    paths, skipped = image_paths(cfg.images)
    for entry, why in skipped.items():
        print_and_log(f"skipped {escape(str(entry))}: {escape(why)}", highlight=False, soft_wrap=True)
    prepare_process(cfg)
    model = load_classifier(resolve_checkpoint(cfg.ckpt_path, training_runs(cfg))).eval()
    conversion = conversion_for(model, cfg.convert)
    predictions = classify(model, paths, conversion, cfg.preprocess, int(cfg.top_k), int(cfg.batch_size))
    show(predictions, int(cfg.top_k))
    csv_path = write_csv(
        predictions, min(int(cfg.top_k), len(class_names(model))), Path(cfg.paths.output_dir) / "predictions.csv"
    )
    print_and_log(f"{len(predictions)} images ({conversion} conversion); predictions in {escape(str(csv_path))}")
    failed = [p for p in predictions if p.error]
    if failed:
        raise ConvlensError(
            f"{len(failed)} of {len(predictions)} images could not be classified "
            f"(first: {failed[0].image}); the error column of {csv_path} says why"
        )
    return predictions
