"""The ConvNetPictures callback in real training runs, a real TensorBoard serving its output, and visualize.py."""

import json
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
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose_config, run_entry
from convlens.errors import ConvlensError
from convlens.models.classifier import ConvNetClassifier
from convlens.pictures.callback import ConvNetPictures
from convlens.tasks.train import build_trainer, instantiate_group, prepare_process
from convlens.tasks.visualize import visualize

pytestmark = pytest.mark.slow

# 40 real MNIST batches, validating every 10 on 200 images: four checks, at steps 10, 20, 30, 40.
TINY = (
    "trainer=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=40",
    "trainer.val_check_interval=10",
    "trainer.limit_val_batches=1",
    "data.eval_batch_size=200",
    "model.optimizer.lr=0.02",
    "threads=1",
    "callbacks.rich_progress_bar=null",
    "trainer.enable_model_summary=false",
)
CHECK_STEPS = [10, 20, 30, 40]
PICTURE_TAGS = ["kernels/conv1", "kernels/conv2", "feature_maps/conv1", "feature_maps/conv2", "probe/image"]
HISTOGRAM_TAGS = [f"histograms/{conv}.{part}" for conv in ("conv1", "conv2") for part in ("weight", "bias")]


def side(tiles: int, tile_px: int, separator_px: int = 2) -> int:
    """Pixels along a grid of ``tiles`` tiles with separators around and between them."""
    return tiles * (tile_px + separator_px) + separator_px


# (width, height) of each PNG with two probe images; kernels 5x5 -> 80 px, maps 28x28 and 14x14 -> 84 px.
EXPECTED_SIZES = {
    "kernels/conv1": (side(4, 80), side(1, 80)),
    "kernels/conv2": (side(8, 80), side(4, 80)),
    "feature_maps/conv1": (side(4, 84), side(2, 84)),
    "feature_maps/conv2": (side(8, 84), side(2, 84)),
    "probe/image": (side(2, 84), side(1, 84)),
}
# In TensorBoard, which enlarges them itself, the same grids at their own size with 1-pixel separators.
TENSORBOARD_SIZES = {
    "kernels/conv1": (side(4, 5, 1), side(1, 5, 1)),
    "kernels/conv2": (side(8, 5, 1), side(4, 5, 1)),
    "feature_maps/conv1": (side(4, 28, 1), side(2, 28, 1)),
    "feature_maps/conv2": (side(8, 14, 1), side(2, 14, 1)),
    "probe/image": (side(2, 28, 1), side(1, 28, 1)),
}


def fit(run_dir: Path, data_dir: Path, *overrides: str):
    """Train as ``src/train.py`` does (same helpers), keeping the trainer to look at its callback afterwards."""
    cfg = compose_config("train", [*TINY, f"paths.data_dir={data_dir}", "test=false", *overrides], run_dir)
    prepare_process(cfg)
    datamodule, model = instantiate(cfg.data), instantiate(cfg.model)
    trainer = build_trainer(cfg, instantiate_group(cfg.get("callbacks")), instantiate_group(cfg.get("logger")))
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    return trainer


def events(run_dir: Path) -> EventAccumulator:
    (event_file,) = (run_dir / "tensorboard").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(event_file), size_guidance={"images": 0, "histograms": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir):
    """One tiny real run with two probe images (a 6 and a 7), shared by the tests that only read its output."""
    run_dir = tmp_path_factory.mktemp("run")
    trainer = fit(run_dir, data_dir, "callbacks.convnet_pictures.probe_indices=[100,0]")
    (callback,) = [c for c in trainer.callbacks if isinstance(c, ConvNetPictures)]
    return run_dir, callback


def test_every_picture_is_logged_once_per_check_at_its_size(run):
    run_dir, _ = run
    logged = events(run_dir)
    for tag in PICTURE_TAGS:
        images = logged.Images(tag)
        assert [image.step for image in images] == CHECK_STEPS, tag
        assert {(image.width, image.height) for image in images} == {TENSORBOARD_SIZES[tag]}, tag
    for tag in HISTOGRAM_TAGS:
        assert [histogram.step for histogram in logged.Histograms(tag)] == CHECK_STEPS, tag
    (curves,) = logged.Images("error_curves")
    assert (curves.step, curves.width, curves.height) == (40, 600, 400)


def test_error_curves_follow_the_logged_error_scalars(run):
    run_dir, callback = run
    logged = events(run_dir)
    for tag, history in (("val/err", callback.val_err), ("train/err", callback.train_err)):
        values = [event.value for event in logged.Scalars(tag)]
        assert len(values) == len(CHECK_STEPS) and history == pytest.approx(values), tag
    assert callback.val_err[-1] < callback.val_err[0]  # it learned something: the curves are not flat


def test_the_run_directory_holds_the_final_pictures(run):
    run_dir, _ = run
    assert Image.open(run_dir / "error_curves.png").size == (600, 400)
    for tag, size in EXPECTED_SIZES.items():
        assert Image.open(run_dir / f"{tag.replace('/', '_')}.png").size == size


@pytest.mark.parametrize("no_tensorboard", ["logger=csv", "~logger"])  # ~logger: no logger at all
def test_without_tensorboard_the_pngs_are_still_written(tmp_path, data_dir, no_tensorboard):
    fit(tmp_path, data_dir, no_tensorboard, "trainer.limit_train_batches=10")
    assert not (tmp_path / "tensorboard").exists()
    assert Image.open(tmp_path / "error_curves.png").size == (600, 400)
    assert Image.open(tmp_path / "kernels_conv2.png").size == EXPECTED_SIZES["kernels/conv2"]
    assert Image.open(tmp_path / "feature_maps_conv1.png").size == (side(4, 84), side(1, 84))  # default: one probe


def test_training_is_bit_identical_with_the_callback_on_or_off(tmp_path, data_dir):
    on = fit(tmp_path / "on", data_dir)
    off = fit(tmp_path / "off", data_dir, "callbacks.convnet_pictures=null")
    assert any(isinstance(c, ConvNetPictures) for c in on.callbacks)
    assert not any(isinstance(c, ConvNetPictures) for c in off.callbacks)
    val_acc = {name: [e.value for e in events(tmp_path / name).Scalars("val/acc")] for name in ("on", "off")}
    assert len(val_acc["on"]) == len(CHECK_STEPS) and val_acc["on"] == val_acc["off"]
    weights_on, weights_off = on.lightning_module.state_dict(), off.lightning_module.state_dict()
    assert all(torch.equal(weights_on[key], weights_off[key]) for key in weights_on)


def test_resumed_training_keeps_the_error_history(tmp_path, data_dir):
    first = fit(tmp_path, data_dir, "trainer.limit_train_batches=20")
    (before,) = [c for c in first.callbacks if isinstance(c, ConvNetPictures)]
    resumed = fit(
        tmp_path,
        data_dir,
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=20",
        f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}",
    )
    (after,) = [c for c in resumed.callbacks if isinstance(c, ConvNetPictures)]
    assert len(before.val_err) == 2 and len(after.val_err) == 4
    assert after.val_err[:2] == before.val_err and after.train_err[:2] == before.train_err


def test_a_probe_index_outside_the_test_set_is_a_clear_error(tmp_path, data_dir):
    with pytest.raises(ConvlensError, match=r"probe_indices has \[10000\], outside the test set's 0..9999"):
        fit(tmp_path, data_dir, "callbacks.convnet_pictures.probe_indices=[100,10000]")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def served_tags(base: str, plugin: str, deadline: float) -> dict:
    """Ask TensorBoard for a plugin's tags until the run shows up (it loads event files in the background)."""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/data/plugin/{plugin}/tags", timeout=5) as response:
                tags = json.load(response)
            if tags.get("."):
                return tags["."]
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"TensorBoard did not serve {plugin} tags in time")


def test_a_real_tensorboard_serves_the_pictures_and_curves(run):
    run_dir, _ = run
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(run_dir / "tensorboard"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        images = served_tags(f"http://127.0.0.1:{port}", "images", deadline)
        scalars = served_tags(f"http://127.0.0.1:{port}", "scalars", deadline)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert set(PICTURE_TAGS) | {"error_curves"} <= images.keys()
    assert {"val/err", "train/err", "val/acc"} <= scalars.keys()
    assert images["kernels/conv1"]["samples"] == 1


def test_visualize_draws_the_checkpoint(run, tmp_path, data_dir):
    run_dir, _ = run
    out_dir = tmp_path / "pictures"
    result = run_entry(
        "visualize.py",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        "index=100",
        f"paths.data_dir={data_dir}",
        f"out_dir={out_dir}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    )
    assert "test image 100 (a 6): predicted" in result.stdout
    title = 24
    expected = {
        "kernels_conv1": (side(4, 80), side(1, 80) + title),
        "kernels_conv2": (side(8, 80), side(4, 80) + title),
        "feature_maps_conv1": (side(4, 84), side(1, 84) + title),
        "feature_maps_conv2": (side(8, 84), side(1, 84) + title),
    }
    for name, size in expected.items():
        assert Image.open(out_dir / f"{name}.png").size == size, name


def test_visualize_reads_a_users_picture_and_refuses_a_text_file(run, tmp_path):
    run_dir, _ = run
    checkpoint = f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"
    page = Image.new("L", (300, 400), 235)
    page.paste(0, (120, 80, 160, 330))  # a dark "1" on light paper
    page.save(tmp_path / "one.jpg")
    written = visualize(
        compose_config(
            "visualize", [checkpoint, f"image={tmp_path / 'one.jpg'}", f"out_dir={tmp_path / 'one'}"], tmp_path
        )
    )
    assert Image.open(written["feature_maps_conv2"]).size == (side(8, 84), side(1, 84) + 24)
    assert Image.open(written["input"]).size == (84, 84 + 24)

    notes = tmp_path / "digit.png"
    notes.write_text("this is a six, honestly\n")
    failed = run_entry(
        "visualize.py",
        checkpoint,
        f"image={notes}",
        f"out_dir={tmp_path / 'notes'}",
        f"hydra.run.dir={tmp_path / 'hydra2'}",
        check=False,
    )
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
    assert f"{notes} is not an image" in failed.stderr
    assert not (tmp_path / "notes").exists()


def test_visualize_takes_ckpt_path_last_the_newest_runs_last_checkpoint(tmp_path):
    runs = tmp_path / "logs" / "train" / "runs"
    for run, depth in (("2026-01-01_00-00-00_1", [4, 8]), ("2026-01-02_00-00-00_1", [2, 4])):
        (runs / run / "checkpoints").mkdir(parents=True)
        model = ConvNetClassifier(
            net={"depth": depth}, optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01}
        )
        torch.save(
            {
                "state_dict": model.state_dict(),
                "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__,
            },
            runs / run / "checkpoints" / "last.ckpt",
        )
    page = Image.new("L", (60, 80), 235)
    page.paste(0, (25, 10, 35, 70))  # a dark "1" on light paper
    page.save(tmp_path / "one.png")
    written = visualize(
        compose_config(
            "visualize",
            [
                "ckpt_path=last",
                f"image={tmp_path / 'one.png'}",
                f"paths.log_dir={tmp_path / 'logs'}",
                f"out_dir={tmp_path / 'pictures'}",
            ],
            tmp_path,
        )
    )
    assert Image.open(written["kernels_conv1"]).size == (side(2, 80), side(1, 80) + 24)  # the newest run's 2 kernels
