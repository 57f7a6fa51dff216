"""src/app.py as a user meets it: a real server process, driven through Gradio's own client and a real Chromium."""

from __future__ import annotations

import base64
import html
import io
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from PIL import Image

from browser import chromium, needs_chromium, requested_urls
from conftest import PROJECT_ROOT, compose_config
from convlens.data.own_images import load_digit
from convlens.models.classifier import ConvNetClassifier
from convlens.models.from_checkpoint import load_classifier
from convlens.tasks.train import train

pytestmark = pytest.mark.slow
gradio_client = pytest.importorskip("gradio_client", reason="the app extra is not installed: pip install -e '.[app]'")

# A few hundred real MNIST steps at a high learning rate: a classifier that gets most test digits right.
TINY = (
    "trainer=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=300",
    "trainer.limit_val_batches=1",
    "model.optimizer.lr=0.03",
    "test=false",
    "threads=1",
    "callbacks.rich_progress_bar=null",
    "callbacks.convnet_pictures=null",
    "logger=csv",
    "trainer.enable_model_summary=false",
)
DIGITS = (100, 0, 1, 2, 3)  # test images: a 6, a 7, a 2, a 1, a 0


def side(tiles: int, tile_px: int) -> int:
    """Pixels along a grid of ``tiles`` tiles with conf/picture's 2-pixel separators."""
    return tiles * (tile_px + 2) + 2


# (width, height) of each picture for one image; kernels 5x5 -> 80 px, maps 28x28 and 14x14 -> 84 px;
# torchvision's make_grid frames no single tile, so the input alone has no separators.
SIZES = {
    "input": (84, 84),
    "feature_maps_conv1": (side(4, 84), side(1, 84)),
    "feature_maps_conv2": (side(8, 84), side(1, 84)),
    "kernels_conv1": (side(4, 80), side(1, 80)),
    "kernels_conv2": (side(8, 80), side(4, 80)),
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, data_dir) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    train(compose_config("train", [*TINY, f"paths.data_dir={data_dir}"], run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def test_set(tmp_path_factory, data_dir):
    cfg = compose_config("app", [f"paths.data_dir={data_dir}"], tmp_path_factory.mktemp("test_set"))
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule.test_set


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``python src/app.py`` on a free loopback port; its console (stdout and stderr) goes to ``console``."""

    def __init__(self, tmp: Path, data_dir: Path, *overrides: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.console = tmp / "console.txt"
        env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp / "gradio")}
        with open(self.console, "w") as console:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(PROJECT_ROOT / "src" / "app.py"),
                    f"app.port={self.port}",
                    f"paths.data_dir={data_dir}",
                    f"paths.log_dir={tmp / 'logs'}",
                    *overrides,
                ],
                cwd=PROJECT_ROOT,
                stdout=console,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def wait_until_serving(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"src/app.py exited ({self.process.returncode}):\n{self.console.read_text()}")
            try:
                with urllib.request.urlopen(self.url, timeout=5):
                    return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        raise AssertionError(f"src/app.py did not serve {self.url} in {timeout} s:\n{self.console.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


@pytest.fixture(scope="module")
def server(tmp_path_factory, data_dir, checkpoint):
    """The app comparing a good checkpoint with a missing one, which it must report and then keep serving."""
    tmp = tmp_path_factory.mktemp("app")
    running = Server(tmp, data_dir, f"ckpt_path={checkpoint}", f"compare_ckpt_path={tmp / 'nowhere.ckpt'}")
    running.missing = tmp / "nowhere.ckpt"
    try:
        running.wait_until_serving()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server.url, verbose=False)


def direct_prediction(checkpoint: Path, digit: torch.Tensor) -> str:
    model = load_classifier(checkpoint).eval()
    with torch.no_grad():
        return str(int(model(digit[None]).argmax()))


def size_of(path: str) -> tuple[int, int]:
    with Image.open(path) as picture:
        return picture.size


def paper_digit(test_set, index: int, path: Path) -> Path:
    """Test image ``index`` as a scan would show it: dark ink on white, 140x140 pixels."""
    ink = test_set[index][0][0].numpy()
    Image.fromarray(((1 - ink) * 255).astype("uint8"), mode="L").resize((140, 140), Image.Resampling.BILINEAR).save(
        path
    )
    return path


def data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def test_the_api_predicts_test_digits_and_returns_every_picture(client, checkpoint, test_set):
    for index in DIGITS:
        (seen, message, status_a, top_a, conv1_a, conv2_a, status_b, top_b, conv1_b, conv2_b) = client.predict(
            index, str(checkpoint), str(checkpoint), api_name="/look_at_test_image"
        )
        expected = direct_prediction(checkpoint, test_set[index][0])
        assert top_a["label"] == top_b["label"] == expected, f"test image {index}"
        assert len(top_a["confidences"]) == 3 and f"test image {index} (a {test_set[index][1]})" in message
        assert f"predicted {expected}" in status_a and "error" not in status_b
        assert size_of(seen) == SIZES["input"]
        assert size_of(conv1_a) == size_of(conv1_b) == SIZES["feature_maps_conv1"]
        assert size_of(conv2_a) == size_of(conv2_b) == SIZES["feature_maps_conv2"]
    correct = sum(
        client.predict(i, str(checkpoint), "", api_name="/look_at_test_image")[3]["label"] == str(test_set[i][1])
        for i in DIGITS
    )
    assert correct >= 4, "the tiny classifier should know most of these clear digits"


def test_an_upload_and_a_drawing_are_converted_as_predict_py_converts_a_file(client, checkpoint, test_set, tmp_path):
    preprocess = compose_config("app", [], tmp_path).preprocess
    for index in DIGITS[:3]:
        scan = paper_digit(test_set, index, tmp_path / f"digit{index}.png")
        expected = direct_prediction(checkpoint, load_digit(scan, **preprocess))
        uploaded = client.predict(gradio_client.handle_file(str(scan)), str(checkpoint), "", api_name="/look_at_upload")
        drawn = client.predict(data_url(scan), str(checkpoint), "", api_name="/look_at_drawing")
        assert uploaded[3]["label"] == drawn[3]["label"] == expected
        assert f"digit{index}.png" in uploaded[1] and "your drawing" in drawn[1]


def test_a_checkpoint_brings_its_kernels(client, checkpoint):
    resolved, kernels_conv1, kernels_conv2, status, *_ = client.predict(str(checkpoint), api_name="/checkpoint_b")
    assert resolved == str(checkpoint.resolve()) and str(checkpoint.resolve()) in status
    assert size_of(kernels_conv1) == SIZES["kernels_conv1"]
    assert size_of(kernels_conv2) == SIZES["kernels_conv2"]


def test_a_checkpoint_inside_the_folder_the_app_runs_in_is_shown_relative_to_it(tmp_path, monkeypatch):
    """So that the page (and docs/app.png) shows the run, not the machine's folders."""
    from convlens.tasks.app import shown_path  # gradio comes with it: only once the app extra is known to be here

    inside, outside = tmp_path / "logs" / "run" / "last.ckpt", tmp_path.parent / "elsewhere.ckpt"
    monkeypatch.chdir(tmp_path)
    assert shown_path(inside) == str(Path("logs", "run", "last.ckpt"))
    assert shown_path(outside) == str(outside)


def saved(model: ConvNetClassifier, path: Path) -> Path:
    """``model`` written as a checkpoint that load_classifier reads: its weights and hyperparameters."""
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": pl.__version__,
        },
        path,
    )
    return path


def rgb_checkpoint(path: Path) -> Path:
    """A readable checkpoint of a network for 3-channel 32x32 pictures, as data=imagefolder trains."""
    model = ConvNetClassifier(
        net={"in_channels": 3, "image_size": 32, "num_classes": 10},
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01},
    )
    return saved(model, path)


def test_bad_files_get_one_line_on_the_page_and_console_and_the_app_keeps_serving(
    client, server, checkpoint, test_set, tmp_path
):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not a picture")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:5000])
    upload = gradio_client.handle_file(str(not_an_image))
    cases = {
        "upload": (
            client.predict(upload, str(checkpoint), "", api_name="/look_at_upload")[1],
            "the upload notes.png is not an image Pillow can read",
        ),
        "drawing": (
            client.predict("data:image/png;base64,!!", str(checkpoint), "", api_name="/look_at_drawing")[1],
            "the drawing is not a PNG data URL",
        ),
        "index": (
            client.predict(10000, str(checkpoint), "", api_name="/look_at_test_image")[1],
            "test image 10000 does not exist; pick an index from 0 to 9999",
        ),
        "missing": (client.predict(str(tmp_path / "gone.ckpt"), api_name="/checkpoint_b")[3], "does not exist"),
        "truncated": (client.predict(str(truncated), api_name="/checkpoint_b")[3], "is not a checkpoint"),
        "architecture": (
            client.predict(str(rgb_checkpoint(tmp_path / "rgb.ckpt")), api_name="/checkpoint_b")[3],
            "is a network for 3-channel 32x32 images, not for 28x28 grayscale digits",
        ),
    }
    console = server.console.read_text()
    for name, (shown, expected) in cases.items():
        assert shown.count("error:") == 1 and expected in shown, name
        assert expected in console, name
    assert "Traceback" not in console
    still = client.predict(100, str(checkpoint), "", api_name="/look_at_test_image")
    assert still[3]["label"] == direct_prediction(checkpoint, test_set[100][0])


def test_a_bad_checkpoint_at_start_is_reported_and_the_page_still_serves(client, server):
    line = f"checkpoint {server.missing} does not exist"
    assert f"error: {line}" in server.console.read_text()
    assert line in client.predict(str(server.missing), api_name="/checkpoint_b")[3]


def blank_png_url(width: int, height: int) -> str:
    """A white picture of ``width`` x ``height`` as a PNG data URL: small to send, huge to decode."""
    buffer = io.BytesIO()
    Image.new("1", (width, height), 1).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_a_huge_drawing_and_a_fractional_index_are_refused_as_uploads_are(client, server, checkpoint):
    cases = {  # preprocess.max_pixels is 50,000,000; Pillow itself refuses above about 179 million
        "huge": (
            blank_png_url(8000, 8000),
            "the drawing is 8000x8000 = 64,000,000 pixels, more than the 50,000,000 allowed; scale it down "
            "or raise preprocess.max_pixels",
        ),
        "bomb": (blank_png_url(14000, 14000), "the drawing is far too large"),
    }
    for name, (drawing, expected) in cases.items():
        shown = client.predict(drawing, str(checkpoint), "", api_name="/look_at_drawing")[1]
        assert shown.count("error:") == 1 and expected in shown, name
    fraction = client.predict(2.5, str(checkpoint), "", api_name="/look_at_test_image")
    assert "test image 2.5 does not exist; pick an index from 0 to 9999" in fraction[1] and not fraction[3]
    console = server.console.read_text()
    assert all(expected in console for _, expected in cases.values()) and "test image 2.5 does not" in console
    assert "Traceback" not in console and "DecompressionBombError" not in console


def test_a_port_in_use_is_one_line_naming_it_and_the_key(tmp_path, data_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                str(PROJECT_ROOT / "src" / "app.py"),
                f"app.port={port}",
                f"paths.data_dir={data_dir}",
                f"paths.log_dir={tmp_path / 'logs'}",
                "ckpt_path=null",
            ],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip().splitlines() == [
        f"error: port {port} on 127.0.0.1 is already in use (another app, or this one still running); stop that, "
        f"or serve on another port: app.port={port + 1}"
    ]


def test_ckpt_path_last_picking_a_run_that_is_not_mnist_says_so_and_what_it_classifies(tmp_path, data_dir):
    run = tmp_path / "logs" / "train" / "runs" / "2026-01-01_00-00-00_1" / "checkpoints"
    run.mkdir(parents=True)
    newest = folder_checkpoint(run / "last.ckpt", ["one", "two", "zero"])  # as data=imagefolder on digits trains
    server = Server(tmp_path, data_dir, "ckpt_path=last")
    try:
        server.wait_until_serving()
        line = (
            f"ckpt_path=last picked the newest run, {newest.resolve()}, which classifies one, two, zero, not "
            "MNIST's digits; pass ckpt_path=<an MNIST run's checkpoint> to look at digits"
        )
        assert f"checkpoint {line}" in server.console.read_text()
        status = gradio_client.Client(server.url, verbose=False).predict(
            100, "last", "", api_name="/look_at_test_image"
        )[2]
        assert line in html.unescape(status)
    finally:
        server.stop()


def folder_checkpoint(path: Path, class_names: list[str]) -> Path:
    """A readable checkpoint of a grayscale 28x28 network for ``class_names``, as data=imagefolder writes one."""
    model = ConvNetClassifier(
        net={"num_classes": len(class_names)},
        class_names=class_names,
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01},
    )
    return saved(model, path)


@needs_chromium
def test_a_stroke_drawn_in_chromium_is_classified_on_the_page(server, checkpoint, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chromium()
    try:
        browser.get(server.url)
        status = lambda: browser.find_element(By.ID, "status-a").text  # noqa: E731
        WebDriverWait(browser, 60).until(lambda _: "test image 100 (a 6): predicted" in status())
        canvas = browser.find_element(By.CSS_SELECTOR, "#drawing canvas")
        stroke = ActionChains(browser, duration=20).move_to_element_with_offset(canvas, 0, -90).click_and_hold()
        for y in range(-90, 91, 10):  # a vertical bar down the middle: a 1
            stroke.move_to_element_with_offset(canvas, 0, y)
        stroke.release().perform()
        WebDriverWait(browser, 30).until(lambda _: "your drawing: predicted" in status())
        shown = browser.find_element(By.CSS_SELECTOR, "#prediction-a [data-testid='label-output-value']").text
        drawing = tmp_path / "drawing.png"
        drawing.write_bytes(
            base64.b64decode(
                browser.execute_script(
                    "return document.querySelector('#drawing canvas').toDataURL('image/png')"
                ).partition(",")[2]
            )
        )
        urls = requested_urls(browser)
    finally:
        browser.quit()
    preprocess = compose_config("app", [], tmp_path).preprocess
    assert shown == direct_prediction(checkpoint, load_digit(drawing, **preprocess))
    outside = sorted(
        url
        for url in urls
        if url.startswith(("http:", "https:", "ws:", "wss:"))
        and not url.startswith(("http://127.0.0.1:", "ws://127.0.0.1:"))
    )
    assert not outside, f"the page fetched from outside this machine: {outside}"
