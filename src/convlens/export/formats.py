"""The export formats: each writes the network to one file and runs that file back for the self-check.

Both files take a batch of images named ``image`` (N, channels, size, size) with N free, and give
``log_probabilities`` (N, classes): the ConvNet's own output, log-softmax over the classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from convlens.errors import ConvlensError
from convlens.startup.extras import import_extra

INPUT, OUTPUT = "image", "log_probabilities"  # the names the exported files give their input and output


class NamedInput(nn.Module):
    """The ConvNet with its input called ``image``: torch.export names a program's inputs after forward's."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


def dynamic_batch() -> dict[str, dict[int, torch.export.Dim]]:
    """Dimension 0 of the input (the batch) is free; the image's channels and sides are fixed."""
    return {INPUT: {0: torch.export.Dim("batch", min=1)}}


def write_torch_export(net: nn.Module, example: torch.Tensor, path: Path) -> None:
    program = torch.export.export(NamedInput(net).eval(), (example,), dynamic_shapes=dynamic_batch())
    torch.export.save(program, path)


def run_torch_export(path: Path, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.export.load(path).module()(images)


def write_onnx(net: nn.Module, example: torch.Tensor, path: Path) -> None:
    """torch's dynamo-based exporter (it needs onnx and onnxscript); the weights inside the one file."""
    for module in ("onnx", "onnxscript"):
        import_extra(module, "export", "format=onnx")
    torch.onnx.export(
        NamedInput(net).eval(),
        (example,),
        str(path),
        dynamo=True,
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamic_shapes=dynamic_batch(),
        external_data=False,
        verbose=False,
    )


def run_onnx(path: Path, images: torch.Tensor) -> torch.Tensor:
    onnxruntime = import_extra("onnxruntime", "export", "format=onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run([OUTPUT], {INPUT: images.numpy()})[0])


@dataclass(frozen=True)
class Format:
    suffix: str  # the exported file's extension
    needs: tuple[str, ...]  # modules of the ``export`` extra, checked before the slow export starts
    write: Callable[[nn.Module, torch.Tensor, Path], None]
    run: Callable[[Path, torch.Tensor], torch.Tensor]


FORMATS = {
    "onnx": Format(".onnx", ("onnx", "onnxscript", "onnxruntime"), write_onnx, run_onnx),
    "torch_export": Format(".pt2", (), write_torch_export, run_torch_export),
}


def chosen_format(name: str) -> Format:
    """The format ``name``, with its extra's modules importable, or one line saying what to do."""
    if name not in FORMATS:
        raise ConvlensError(
            f"format={name} is not an export format; use format=onnx (onnxruntime, any language) "
            "or format=torch_export (a .pt2 for torch.export.load)"
        )
    for module in FORMATS[name].needs:
        import_extra(module, "export", f"format={name}")
    return FORMATS[name]
