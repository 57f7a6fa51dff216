"""export.py: both formats give the checkpoint's outputs when run back outside convlens; bad input is one line."""

import json
import sys

import pytest
import torch

from conftest import TINY_RUN, compose_config, run_entry
from convlens.errors import ConvlensError
from convlens.export.formats import INPUT, OUTPUT
from convlens.models.from_checkpoint import load_classifier
from convlens.tasks.export import export
from convlens.tasks.train import train

EXPORT_RUN = [*TINY_RUN, "callbacks.convnet_pictures=null"]  # nothing to look at: only the export is tested


@pytest.fixture(scope="module")
def logs(tmp_path_factory, data_dir):
    """A log dir whose one training run (10 steps) has checkpoints/last.ckpt, for ckpt_path=last."""
    log_dir = tmp_path_factory.mktemp("logs")
    train(compose_config("train", [*EXPORT_RUN, f"paths.data_dir={data_dir}"], log_dir / "train" / "runs" / "tiny"))
    return log_dir


def exported(logs, data_dir, tmp_path, *overrides):
    return export(
        compose_config("export", [f"paths.log_dir={logs}", f"paths.data_dir={data_dir}", *overrides], tmp_path)
    )


def checkpoint_outputs(logs, images):
    with torch.no_grad():
        return load_classifier(logs / "train" / "runs" / "tiny" / "checkpoints" / "last.ckpt").eval()(images)


def mnist_test_images(data_dir, count):
    """The test half of MNIST's test set (after the 5,000 validation images), as the datamodule scales it."""
    from torchvision import datasets

    pixels = datasets.MNIST(str(data_dir), train=False).data[5000 : 5000 + count]
    return pixels.unsqueeze(1).float().div(255)


@pytest.mark.slow
def test_onnx_file_gives_the_checkpoints_outputs_in_onnxruntime(logs, data_dir, tmp_path):
    import onnxruntime

    result = exported(logs, data_dir, tmp_path, "ckpt_path=last", "format=onnx")
    assert result["file"] == tmp_path / "convnet.onnx" and result["test_images"] == 1000
    assert result["max_abs_difference"] <= 1e-5
    expects = json.loads((tmp_path / "convnet.onnx.json").read_text())
    assert expects["input"]["name"] == INPUT and expects["input"]["shape"] == ["batch", 1, 28, 28]
    assert expects["class_names"] == [str(digit) for digit in range(10)]
    assert expects["preprocess"]["conversion"] == "digit" and expects["preprocess"]["settings"]["digit_box"] == 20
    assert str(logs) in expects["checkpoint"] and expects["check"]["same_predicted_classes"] is True

    session = onnxruntime.InferenceSession(str(result["file"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [INPUT] and [o.name for o in session.get_outputs()] == [OUTPUT]
    images = mnist_test_images(data_dir, 1000)
    for batch in (images, images[:3]):  # the batch dimension is free
        got = torch.from_numpy(session.run(None, {INPUT: batch.numpy()})[0])
        expected = checkpoint_outputs(logs, batch)
        assert (got - expected).abs().max() <= 1e-5
        assert torch.equal(got.argmax(1), expected.argmax(1))


@pytest.mark.slow
def test_torch_export_file_gives_the_checkpoints_outputs(logs, data_dir, tmp_path):
    result = exported(logs, data_dir, tmp_path, "ckpt_path=last", "format=torch_export")
    assert result["file"] == tmp_path / "convnet.pt2" and result["max_abs_difference"] <= 1e-5
    assert json.loads((tmp_path / "convnet.pt2.json").read_text())["format"] == "torch_export"
    program = torch.export.load(result["file"])
    assert program.graph_signature.user_inputs == (INPUT,)
    images = mnist_test_images(data_dir, 1000)
    for batch in (images, images[:5]):
        with torch.no_grad():
            got = program.module()(batch)
        expected = checkpoint_outputs(logs, batch)
        assert (got - expected).abs().max() <= 1e-5
        assert torch.equal(got.argmax(1), expected.argmax(1))


@pytest.mark.slow
def test_an_export_that_fails_its_check_is_refused_and_not_written(logs, data_dir, tmp_path):
    # onnxruntime's float arithmetic differs from torch's by ~1e-7: a tolerance far below that must fail.
    with pytest.raises(ConvlensError, match="disagrees with the checkpoint on 1000 test images .*nothing was written"):
        exported(logs, data_dir, tmp_path, "ckpt_path=last", "format=onnx", "tolerance=1e-12")
    assert not list(tmp_path.glob("convnet*")) and not list(tmp_path.glob(".export-*"))


def test_a_missing_extra_names_the_pip_command(logs, data_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what Python does for a package that is not installed
    with pytest.raises(ConvlensError, match=r"format=onnx needs onnxruntime.*pip install -e '\.\[export\]'"):
        exported(logs, data_dir, tmp_path, "ckpt_path=last", "format=onnx")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (
            ["ckpt_path=CKPT", "format=tflite"],
            "error: format=tflite must be one of onnx, torch_export; try format=onnx",
        ),
        (["ckpt_path=BAD", "format=torch_export"], "is not a checkpoint (not a PyTorch archive"),
    ],
)
def test_bad_input_is_one_line(logs, tmp_path, overrides, line):
    bad = tmp_path / "notes.ckpt"
    bad.write_text("not a checkpoint")
    ckpt = logs / "train" / "runs" / "tiny" / "checkpoints" / "last.ckpt"
    overrides = [item.replace("CKPT", str(ckpt)).replace("BAD", str(bad)) for item in overrides]
    result = run_entry("export.py", *overrides, f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and line in result.stderr
