"""What ``src/app.py`` does: a local page where a digit you draw, upload or pick from MNIST's test set goes
through one or two checkpoints, and what they see is redrawn at every stroke.

Every picture comes from ``convlens.pictures.draw``, the functions TensorBoard and ``src/visualize.py`` draw with, and
a drawing or upload becomes the network's input as ``src/predict.py`` converts a file. Gradio serves the page
on the configured host only, with telemetry, its version check and share links off, and its fonts served by the
app itself, so the page makes no request outside this machine.
"""

from __future__ import annotations

import base64
import errno
import html
import io
import logging
import os
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image
from rich.markup import escape

from convlens.data.own_images import load_digit, mnist_style, opened_within
from convlens.errors import ConvlensError
from convlens.models.classifier import ConvNetClassifier
from convlens.models.from_checkpoint import load_classifier, resolve_checkpoint
from convlens.pictures import draw
from convlens.startup.config_checks import check_settings
from convlens.startup.run_log import print_and_log, print_error
from convlens.tasks.predict import class_names
from convlens.tasks.train import prepare_process, training_runs

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read by gradio: no telemetry and no version check on PyPI
try:
    import gradio as gr
except ImportError:
    gr = None  # type: ignore[assignment]  # the app's extra is missing: make app says which pip command adds it

SIDES = ("a", "b")  # the checkpoint columns: the one looked inside, and the one it is compared with
PER_SIDE = ("status", "prediction", "feature_maps_conv1", "feature_maps_conv2")  # what each new input redraws


@dataclass(frozen=True)
class Lens:
    """One loaded checkpoint; its kernels are drawn once, as they do not depend on the input."""

    path: Path
    model: ConvNetClassifier
    classes: list[str]
    kernels_conv1: Image.Image
    kernels_conv2: Image.Image


@dataclass(frozen=True)
class Digit:
    """An input as the network sees it: (1, size, size) in [0, 1], light on dark, and what to call it."""

    pixels: torch.Tensor
    name: str


def error_html(message: str) -> str:
    return f'<p class="convlens-error">error: {html.escape(message)}</p>'


def note_html(message: str) -> str:
    return f'<p class="convlens-note">{html.escape(message)}</p>'


class LiveLook:
    """The page's work without the page: inputs become digits, digits become what each checkpoint sees."""

    def __init__(self, cfg: DictConfig) -> None:
        self.style = instantiate(cfg.picture)
        self.preprocess = dict(cfg.preprocess)
        self.top_k = int(cfg.top_k)
        self.runs_dir = training_runs(cfg)
        self.lenses: dict[tuple[str, int], Lens] = {}  # keyed by file and its mtime: a rewritten file is reloaded
        datamodule = instantiate(cfg.data)
        datamodule.prepare_data()
        datamodule.setup("test")
        self.test_set = datamodule.test_set

    def lens(self, ckpt_path: str) -> Lens:
        """The checkpoint ``ckpt_path`` names (``last``: the newest run's), loaded once and kept."""
        path = resolve_checkpoint(ckpt_path.strip(), self.runs_dir).resolve()
        key = (str(path), path.stat().st_mtime_ns)
        if key not in self.lenses:
            self.lenses[key] = self.opened(path)
        return self.lenses[key]

    def opened(self, path: Path) -> Lens:
        model = load_classifier(path).eval()
        net = model.hparams.net
        channels, size = int(net.get("in_channels", 1)), int(net.get("image_size", 28))
        if channels != 1 or size != int(self.preprocess["size"]):
            raise ConvlensError(
                f"{path} is a network for {channels}-channel {size}x{size} images, not for "
                f"{self.preprocess['size']}x{self.preprocess['size']} grayscale digits; "
                "pass a checkpoint trained with data=mnist"
            )
        return Lens(
            path,
            model,
            class_names(model),
            draw.to_pil(draw.conv1_kernels(model.net.conv1.weight, self.style)),
            draw.to_pil(draw.conv2_kernels(model.net.conv2.weight, self.style)),
        )

    def from_drawing(self, data_url: str | None) -> Digit | None:
        """The sketchpad's strokes (dark on white) as MNIST sees digits; None while nothing is drawn."""
        if not data_url:
            return None
        header, _, encoded = data_url.partition(",")
        try:  # the size rule of uploads (preprocess.max_pixels), before any pixel is decoded
            drawing = opened_within(
                io.BytesIO(base64.b64decode(encoded, validate=True)), "the drawing", self.preprocess["max_pixels"]
            )
            drawing.load()
        except (ValueError, OSError) as error:
            raise ConvlensError(
                f"the drawing is not a PNG data URL ({header[:40]!r}...); "
                "draw on the sketchpad, or send data:image/png;base64,<PNG bytes>"
            ) from error
        if drawing.convert("L").getextrema()[0] == drawing.convert("L").getextrema()[1]:
            return None
        settings = {key: value for key, value in self.preprocess.items() if key != "max_pixels"}
        return Digit(mnist_style(drawing, "the drawing", **settings), "your drawing")

    def from_upload(self, path: str | None) -> Digit | None:
        """An uploaded file, converted as ``src/predict.py`` converts one; errors name the file as uploaded."""
        if not path:
            return None
        upload = Path(path)
        try:
            return Digit(load_digit(upload, **self.preprocess), upload.name)
        except ConvlensError as error:
            raise ConvlensError(str(error).replace(str(upload), f"the upload {upload.name}")) from error

    def from_test_set(self, index: float | None) -> Digit:
        last = len(self.test_set) - 1
        if index is None or not 0 <= index <= last or int(index) != index:
            raise ConvlensError(f"test image {index} does not exist; pick an index from 0 to {last}")
        pixels, label = self.test_set[int(index)]
        return Digit(pixels.cpu(), f"test image {int(index)} (a {label})")

    def random_index(self) -> int:
        return random.randrange(len(self.test_set))

    def input_picture(self, digit: Digit) -> Image.Image:
        return draw.to_pil(draw.input_images(digit.pixels[None], self.style))

    @torch.no_grad()
    def seen(self, lens: Lens, digit: Digit) -> tuple[dict[str, float], Image.Image, Image.Image]:
        """The top classes with their probabilities, and the conv1 and conv2 feature maps of ``digit``."""
        batch = digit.pixels[None]
        probabilities = lens.model(batch).exp()[0]
        conv1_maps, conv2_maps = lens.model.net.features(batch)
        best = probabilities.topk(min(self.top_k, len(lens.classes)))
        top = {lens.classes[int(i)]: float(p) for p, i in zip(best.values, best.indices, strict=True)}
        return (
            top,
            draw.to_pil(draw.feature_maps(conv1_maps, self.style)),
            draw.to_pil(draw.feature_maps(conv2_maps, self.style)),
        )

    def side(self, ckpt_path: str, digit: Digit | None) -> list[Any]:
        """One checkpoint column's status line, prediction and feature maps (empty without a checkpoint)."""
        if not ckpt_path.strip():
            return [note_html("no checkpoint: type a path to compare with"), None, None, None]
        try:
            lens = self.lens(ckpt_path)
        except ConvlensError as error:
            return [error_html(str(error)), None, None, None]
        if digit is None:
            return [note_html(checkpoint_line(ckpt_path, lens)), None, None, None]
        top, conv1_maps, conv2_maps = self.seen(lens, digit)
        best = next(iter(top))
        return [
            note_html(f"{digit.name}: predicted {best} ({top[best]:.1%}) · {checkpoint_line(ckpt_path, lens)}"),
            top,
            conv1_maps,
            conv2_maps,
        ]

    def look_at_drawing(self, drawing: str | None, ckpt_path_a: str, ckpt_path_b: str) -> list[Any]:
        """``drawing``: the sketchpad's canvas as a PNG data URL (``data:image/png;base64,...``); empty: cleared."""
        return self.look(lambda: self.from_drawing(drawing), ckpt_path_a, ckpt_path_b)

    def look_at_upload(self, upload: str | None, ckpt_path_a: str, ckpt_path_b: str) -> list[Any]:
        return self.look(lambda: self.from_upload(upload), ckpt_path_a, ckpt_path_b)

    def look_at_test_image(self, index: float | None, ckpt_path_a: str, ckpt_path_b: str) -> list[Any]:
        return self.look(lambda: self.from_test_set(index), ckpt_path_a, ckpt_path_b)

    def look(self, read_input: Callable[[], Digit | None], *ckpt_paths: str) -> list[Any]:
        """The digit, its picture, the input's message, then ``PER_SIDE`` for each checkpoint."""
        try:
            digit = read_input()
        except ConvlensError as error:
            print_error(str(error))
            digit, message = None, error_html(str(error))
        else:
            message = note_html(digit.name if digit else "draw a digit, upload one, or pick a test image")
        picture = self.input_picture(digit) if digit else None
        return [digit, picture, message, *[value for path in ckpt_paths for value in self.side(path, digit)]]

    def checkpoint(self, ckpt_path: str, digit: Digit | None) -> list[Any]:
        """A checkpoint typed into a column: its resolved path, whether its pictures show, its kernels, and
        ``PER_SIDE`` for the current input."""
        try:
            lens = self.lens(ckpt_path) if ckpt_path.strip() else None
        except ConvlensError as error:
            print_error(str(error))
            return [ckpt_path, gr.Column(visible=False), None, None, error_html(str(error)), None, None, None]
        if lens is None:
            return [ckpt_path, gr.Column(visible=False), None, None, *self.side(ckpt_path, digit)]
        return [
            shown_path(lens.path),
            gr.Column(visible=True),
            lens.kernels_conv1,
            lens.kernels_conv2,
            *self.side(ckpt_path, digit),
        ]


def shown_path(path: Path) -> str:
    """A checkpoint's path as the page and the console show it: relative to the folder the app was started from
    when it lies inside it, so a screenshot or a shared screen shows the run, not the machine's folders."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def checkpoint_line(ckpt_path: str, lens: Lens) -> str:
    """The checkpoint's path; for one not trained on MNIST's digits, also what it classifies and, when
    ``ckpt_path=last`` picked it, that it was the newest run: its labels would otherwise pass for digits."""
    if not lens.model.hparams.get("class_names"):  # MNIST runs keep none: their classes are the digits 0-9
        return shown_path(lens.path)
    picked = "ckpt_path=last picked the newest run, " if ckpt_path.strip() == "last" else ""
    return (
        f"{picked}{shown_path(lens.path)}, which classifies {', '.join(lens.classes)}, not MNIST's digits; "
        "pass ckpt_path=<an MNIST run's checkpoint> to look at digits"
    )


# A plain 2D canvas: it hands over a PNG the moment a stroke ends, where gr.Sketchpad first re-renders its
# WebGL layers, which takes longer on a CPU than the rest of the round trip together.
SKETCHPAD_HTML = """
<canvas width="${canvas_px}" height="${canvas_px}" aria-label="sketchpad: draw a digit"></canvas>
<button type="button" class="clear">clear</button>
"""
SKETCHPAD_CSS = """
canvas { width: 100%; max-width: ${canvas_px}px; aspect-ratio: 1; border: 1px solid #999; touch-action: none;
         cursor: crosshair; display: block; }
.clear { margin-top: 6px; padding: 4px 14px; border: 1px solid var(--border-color-primary);
         border-radius: var(--radius-md); background: var(--button-secondary-background-fill); }
"""
SKETCHPAD_JS = """
const canvas = element.querySelector('canvas');
const pen = canvas.getContext('2d');
const blank = () => { pen.fillStyle = 'white'; pen.fillRect(0, 0, canvas.width, canvas.height); };
const at = (event) => {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * canvas.width / box.width,
          (event.clientY - box.top) * canvas.height / box.height];
};
let drawing = false;
blank();
canvas.addEventListener('pointerdown', (event) => {
  drawing = true;
  canvas.setPointerCapture(event.pointerId);
  Object.assign(pen, {lineWidth: 2 * props.brush_px, lineCap: 'round', lineJoin: 'round', strokeStyle: 'black'});
  pen.beginPath();
  pen.moveTo(...at(event));
  pen.lineTo(...at(event));
  pen.stroke();
});
canvas.addEventListener('pointermove', (event) => { if (drawing) { pen.lineTo(...at(event)); pen.stroke(); } });
const finish = () => {
  if (!drawing) return;
  drawing = false;
  props.value = canvas.toDataURL('image/png');  // a new value is a change event
};
canvas.addEventListener('pointerup', finish);
canvas.addEventListener('pointercancel', finish);
element.querySelector('.clear').addEventListener('click', () => { blank(); props.value = ''; });
"""


def sketchpad(canvas_px: int, brush_px: int) -> Any:
    """A square canvas to draw on with a mouse, pen or finger; its value is the drawing as a PNG data URL."""
    return gr.HTML(
        value="",
        html_template=SKETCHPAD_HTML,
        css_template=SKETCHPAD_CSS,
        js_on_load=SKETCHPAD_JS,
        canvas_px=int(canvas_px),
        brush_px=int(brush_px),
        label="drawing",
        elem_id="drawing",
    )


def picture(label: str, elem_id: str) -> Any:
    """An output picture shown pixel for pixel, as a PNG (lossless: the tiles' colours are the values)."""
    return gr.Image(label=label, type="pil", format="png", interactive=False, elem_id=elem_id, buttons=["download"])


def page(look: LiveLook, cfg: DictConfig) -> Any:
    """The Gradio page: inputs on the left, a column per checkpoint on the right."""
    app = cfg.app
    first_paths = [str(cfg.ckpt_path or ""), str(cfg.compare_ckpt_path or "")]
    with gr.Blocks(title="convlens: look inside, live", analytics_enabled=False) as blocks:
        digit = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1, min_width=app.input_column_px):
                with gr.Tabs():
                    with gr.Tab("Draw"):
                        drawing = sketchpad(app.canvas_px, app.brush_px)
                    with gr.Tab("Upload"):
                        upload = gr.File(
                            label="a picture of one digit", file_types=["image"], type="filepath", elem_id="upload"
                        )
                    with gr.Tab("MNIST test image"):
                        # No rounding (precision=None): an index of 2.5 reaches from_test_set, which refuses it.
                        index = gr.Number(
                            value=cfg.index, precision=None, step=1, label="index (0..9999)", elem_id="index"
                        )
                        pick = gr.Button("random test image")
                seen_input = picture(f"as the network sees it ({cfg.preprocess.size}x{cfg.preprocess.size})", "input")
                message = gr.HTML(label="input", elem_id="message")
            columns: dict[str, dict[str, Any]] = {}
            for side, first_path in zip(SIDES, first_paths, strict=True):
                with gr.Column(scale=2, min_width=app.checkpoint_column_px):
                    columns[side] = {
                        "ckpt": gr.Textbox(
                            value=first_path, label="checkpoint (a .ckpt file, or last)", elem_id=f"ckpt-{side}"
                        ),
                        "status": gr.HTML(label=f"checkpoint {side}", elem_id=f"status-{side}"),
                    }
                    with gr.Column(visible=bool(first_path)) as columns[side]["shown"]:
                        columns[side].update(
                            {
                                "prediction": gr.Label(
                                    num_top_classes=look.top_k, label="prediction", elem_id=f"prediction-{side}"
                                ),
                                "kernels_conv1": picture("conv1 kernels", f"kernels-conv1-{side}"),
                                "feature_maps_conv1": picture("conv1 feature maps", f"feature-maps-conv1-{side}"),
                                "kernels_conv2": picture(
                                    "conv2 kernels, a row per input channel", f"kernels-conv2-{side}"
                                ),
                                "feature_maps_conv2": picture("conv2 feature maps", f"feature-maps-conv2-{side}"),
                            }
                        )
        ckpts = [columns[side]["ckpt"] for side in SIDES]
        looked = [digit, seen_input, message, *[columns[side][key] for side in SIDES for key in PER_SIDE]]
        fast: dict[str, Any] = {
            "show_progress": "hidden",
            "trigger_mode": "always_last",
            "concurrency_limit": None,
            "queue": False,
        }
        drawing.change(look.look_at_drawing, [drawing, *ckpts], looked, api_name="look_at_drawing", **fast)
        upload.upload(look.look_at_upload, [upload, *ckpts], looked, api_name="look_at_upload", **fast)
        index.change(look.look_at_test_image, [index, *ckpts], looked, api_name="look_at_test_image", **fast)
        pick.click(look.random_index, None, index, api_name="random_index")
        opening = blocks.load(look.look_at_test_image, [index, *ckpts], looked, api_visibility="private")
        for side in SIDES:
            column = columns[side]
            outputs = [
                column["ckpt"],
                column["shown"],
                column["kernels_conv1"],
                column["kernels_conv2"],
                *[column[key] for key in PER_SIDE],
            ]
            column["ckpt"].submit(look.checkpoint, [column["ckpt"], digit], outputs, api_name=f"checkpoint_{side}")
            opening = opening.then(look.checkpoint, [column["ckpt"], digit], outputs, api_visibility="private")
    return blocks


def serve(cfg: DictConfig) -> None:
    """Load the checkpoints (reporting a bad one on the console), then serve the page until interrupted."""
    check_settings(cfg)
    if gr is None:
        raise ConvlensError("the app needs Gradio, which is not installed; run make app, or pip install -e '.[app]'")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio checks its own startup over HTTP: not news
    host, port = str(cfg.app.host), int(cfg.app.port)
    check_port_free(host, port)  # before the data and checkpoints load: seconds a taken port would waste
    prepare_process(cfg)
    look = LiveLook(cfg)
    for ckpt_path in (cfg.ckpt_path, cfg.compare_ckpt_path):
        if ckpt_path:
            try:
                print_and_log(
                    escape(f"checkpoint {checkpoint_line(str(ckpt_path), look.lens(str(ckpt_path)))}"), soft_wrap=True
                )
            except ConvlensError as error:
                print_error(f"{error} (the page shows this too; type another checkpoint there)")
    try:
        page(look, cfg).launch(
            server_name=host,
            server_port=port,
            share=False,
            ssr_mode=False,
            pwa=False,
            mcp_server=False,
            footer_links=["api", "settings"],
            theme=gr.themes.Default(),
            css=CSS,
            quiet=False,
        )
    except OSError as error:
        if not str(error).startswith("Cannot find empty port"):  # Gradio's words for a port taken meanwhile
            raise
        raise ConvlensError(port_taken(host, port)) from error


def port_taken(host: str, port: int) -> str:
    return (
        f"port {port} on {host} is already in use (another app, or this one still running); "
        f"stop that, or serve on another port: app.port={port + 1}"
    )


def check_port_free(host: str, port: int) -> None:
    """Bind the address as the server will, and let it go: a taken port or an unknown host is one line."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Gradio's server binds
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ConvlensError(port_taken(host, port)) from error
            raise ConvlensError(
                f"cannot serve on {host}:{port} ({error.strerror or error}); "
                "set app.host to an address of this machine (127.0.0.1) and app.port to a free "
                "port"
            ) from error


CSS = """
.convlens-error { color: #b91c1c; margin: 0; }
.convlens-note { margin: 0; }
"""
