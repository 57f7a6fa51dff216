"""A diverging loss, a kill -9 in the middle of a checkpoint write, a data folder that cannot be written."""

import ast
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import compose_config
from convlens.cli.entry import PROJECT_ROOT
from convlens.data.mnist_files import MnistUnavailableError, ensure_mnist, raw_dir
from convlens.faults.atomic_checkpoint_io import AtomicCheckpointIO
from convlens.faults.finite_loss import TrainingDiverged
from convlens.faults.random_state import RandomStateInCheckpoint
from convlens.tasks.train import train

SOURCES = sorted((PROJECT_ROOT / "src").rglob("*.py"))


@pytest.mark.slow
def test_a_nan_loss_stops_at_its_step_and_the_last_good_checkpoint_stays(tmp_path, data_dir):
    # lr=1e10 makes the loss nan within a few steps (lr=1000 only makes it huge: about 1e15, still finite).
    cfg = compose_config("train", [
        "trainer=cpu", f"paths.data_dir={data_dir}", "callbacks.rich_progress_bar=null", "~logger", "threads=1",
        "trainer.enable_model_summary=false", "trainer.max_epochs=1", "trainer.limit_train_batches=30",
        "trainer.val_check_interval=30", "trainer.limit_val_batches=1", "model.optimizer.lr=1e10",
        "callbacks.step_checkpoint.every_n_train_steps=1"], tmp_path)
    with pytest.raises(TrainingDiverged) as error:
        train(cfg)
    message = str(error.value)
    assert "\n" not in message and message.startswith("training diverged and was stopped: the loss was nan at step ")
    bad_step = int(message.split(" at step ")[1].split()[0])
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert f"the last good checkpoint, {last}, is kept" in message and "model.optimizer.lr (it is 10000000000.0)" in message
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == bad_step - 1  # saved after every step, up to the one before the nan
    assert all(torch.isfinite(value).all() for value in saved["state_dict"].values())
    assert sorted(path.name for path in last.parent.iterdir()) == ["last.ckpt"]


WRITER = """
import sys, torch
from convlens.faults.atomic_checkpoint_io import AtomicCheckpointIO
io = AtomicCheckpointIO()
for version in range(1, 1000):
    io.save_checkpoint({"version": version, "weights": torch.full((16_000_000,), float(version))}, sys.argv[1])
"""


@pytest.mark.slow
def test_kill_9_during_a_checkpoint_write_leaves_the_previous_file_whole(tmp_path):
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"version": 0, "weights": torch.zeros(16_000_000)}, target)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=PROJECT_ROOT,
                              env={"PYTHONPATH": str(PROJECT_ROOT / "src"), "PATH": "/usr/bin:/bin"})
    kills_mid_write = 0
    try:
        deadline = time.monotonic() + 120
        while not kills_mid_write and time.monotonic() < deadline and writer.poll() is None:
            partial = list(tmp_path.glob(".last.ckpt.*.partial"))
            if partial and partial[0].stat().st_size > 0:  # 64 MB being written right now
                writer.send_signal(signal.SIGKILL)
                kills_mid_write += 1
            time.sleep(0.001)
    finally:
        writer.kill()
        writer.wait()
    assert kills_mid_write == 1, "never caught the writer in the middle of a write"
    assert list(tmp_path.glob(".last.ckpt.*.partial")), "the half-written temporary file is where the kill left it"
    checkpoint = torch.load(target, weights_only=True)  # the whole previous version, not half of the next
    assert torch.equal(checkpoint["weights"], torch.full((16_000_000,), float(checkpoint["version"])))


def test_the_writer_replaces_the_file_and_leaves_no_temporary_behind(tmp_path):
    target = tmp_path / "checkpoints" / "last.ckpt"
    for version in (1, 2):
        AtomicCheckpointIO().save_checkpoint({"version": version}, target)
    assert torch.load(target, weights_only=True) == {"version": 2}
    assert [path.name for path in target.parent.iterdir()] == ["last.ckpt"]
    assert target.stat().st_mode & 0o044 == 0o044  # readable by others, like any checkpoint Lightning writes


def test_a_data_dir_that_exists_but_cannot_be_written_is_named(tmp_path):
    """As root, chmod does not stop writes; the immutable attribute does (skipped where chattr is refused)."""
    target = raw_dir(tmp_path)
    target.mkdir(parents=True)
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(target)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a folder unwritable here (no chattr, or no CAP_LINUX_IMMUTABLE)")
    try:
        with pytest.raises(MnistUnavailableError) as error:
            ensure_mnist(tmp_path, sources=())
        assert str(error.value) == (f"the data folder {target} is not writable; "
                                    "set paths.data_dir=<a writable folder>")
    finally:
        subprocess.run([chattr, "-i", str(target)], check=True)


def calls(name: str) -> list[tuple[Path, ast.Call]]:
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(name):
                found.append((path, node))
    return found


def keyword(call: ast.Call, name: str):
    return next((ast.literal_eval(k.value) for k in call.keywords if k.arg == name), None)


def test_every_checkpoint_load_in_the_code_is_weights_only():
    loads = calls("torch.load") + calls(".load_from_checkpoint") + calls("trainer.fit") + calls("trainer.test")
    assert len(loads) >= 5
    for path, call in loads:
        if any(k.arg == "ckpt_path" for k in call.keywords) or not ast.unparse(call.func).startswith("trainer."):
            assert keyword(call, "weights_only") is True, f"{path}:{call.lineno} {ast.unparse(call)}"


def test_no_shell_strings_are_run():
    for name in ("subprocess.run", "subprocess.Popen", "subprocess.call", "subprocess.check_output",
                 "os.system", "os.popen"):
        for path, call in calls(name):
            assert not name.startswith("os."), f"{path}:{call.lineno} runs a shell"
            assert keyword(call, "shell") in (None, False), f"{path}:{call.lineno} uses shell=True"
            assert isinstance(call.args[0], (ast.List, ast.Name)), f"{path}:{call.lineno} passes a string command"


def test_a_source_failing_over_several_lines_still_gives_one_line(tmp_path):
    def mirrors_refused(target):  # the shape of torchvision's download error, one mirror per line
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://a/, got:\n"
                           "<urlopen error [Errno 111] Connection refused>\n")

    with pytest.raises(MnistUnavailableError) as error:
        ensure_mnist(tmp_path, sources=(mirrors_refused,))
    assert "\n" not in str(error.value)
    assert "RuntimeError: Error downloading train-images-idx3-ubyte.gz: Tried https://a/, got: <urlopen" in str(error.value)


def test_the_random_state_resumes_on_a_machine_without_the_saved_gpus(monkeypatch):
    """Only the GPU a process trains on is saved, and restored onto the GPU it trains on now: a checkpoint that
    holds more GPUs' states than are visible (written before, with one state per GPU) never indexes past them."""
    saved_on, restored = [], []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: saved_on.append(device) or torch.ones(16))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((state, device)))
    state = RandomStateInCheckpoint().state_dict()
    assert saved_on == [1] and torch.equal(state["cuda"], torch.ones(16))  # one state, not a list

    on_gpu = SimpleNamespace(device=torch.device("cuda", 0))
    for saved, expected in ((state["cuda"], torch.ones(16)), ([torch.zeros(16), torch.ones(16)], torch.zeros(16))):
        callback = RandomStateInCheckpoint()
        callback.load_state_dict({"torch": torch.get_rng_state(), "cuda": saved})
        callback.on_train_start(None, on_gpu)
        state_put, device = restored.pop()
        assert torch.equal(state_put, expected) and device == on_gpu.device


def test_the_random_state_of_a_gpu_run_resumes_on_a_cpu():
    callback = RandomStateInCheckpoint()
    saved = callback.state_dict()
    assert saved["cuda"] is None  # no GPU was used here
    expected = torch.rand(3)
    torch.set_rng_state(saved["torch"])
    callback.load_state_dict({"torch": saved["torch"], "cuda": [torch.zeros(16, dtype=torch.uint8)] * 2})
    torch.rand(5)
    callback.on_train_start(None, SimpleNamespace(device=torch.device("cpu")))
    assert torch.equal(torch.rand(3), expected)
