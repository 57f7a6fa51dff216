"""A diverging loss, a kill -9 in the middle of a checkpoint write, a data folder that cannot be written."""

import ast
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from pytorch_lightning import Callback

from conftest import compose_config, needs_chunked, run_entry
from convlens.data.mnist_files import MnistUnavailableError, ensure_mnist, raw_dir
from convlens.faults.atomic_checkpoint_io import AtomicCheckpointIO
from convlens.faults.finite_loss import TrainingDiverged
from convlens.faults.random_state import RandomStateInCheckpoint
from convlens.startup.run_task import PROJECT_ROOT
from convlens.tasks.train import train

SOURCES = sorted((PROJECT_ROOT / "src").rglob("*.py"))


@pytest.mark.slow
def test_a_nan_loss_stops_at_its_step_and_the_last_good_checkpoint_stays(tmp_path, data_dir):
    # lr=1e10 makes the loss nan within a few steps (lr=1000 only makes it huge: about 1e15, still finite).
    cfg = compose_config(
        "train",
        [
            "trainer=cpu",
            f"paths.data_dir={data_dir}",
            "callbacks.rich_progress_bar=null",
            "~logger",
            "threads=1",
            "trainer.enable_model_summary=false",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=30",
            "trainer.val_check_interval=30",
            "trainer.limit_val_batches=1",
            "model.optimizer.lr=1e10",
            "callbacks.step_checkpoint.every_n_train_steps=1",
        ],
        tmp_path,
    )
    with pytest.raises(TrainingDiverged) as error:
        train(cfg)
    message = str(error.value)
    assert "\n" not in message and message.startswith("training diverged and was stopped: the loss was nan at step ")
    bad_step = int(message.split(" at step ")[1].split()[0])
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert f"the last good checkpoint, {last}, is kept" in message
    assert "model.optimizer.lr (it is 10000000000.0)" in message
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == bad_step - 1  # saved after every step, up to the one before the nan
    assert all(torch.isfinite(value).all() for value in saved["state_dict"].values())
    assert sorted(path.name for path in last.parent.iterdir()) == ["last.ckpt"]


class FirstNonFiniteLoss(Callback):
    """Records the step of the first nan or infinite loss, read step by step (a reference for one step per call)."""

    step: int | None = None  # on the class: the test reads it after Hydra made the instance

    def on_fit_start(self, trainer, pl_module) -> None:
        FirstNonFiniteLoss.step = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if FirstNonFiniteLoss.step is None and not torch.isfinite(loss):
            FirstNonFiniteLoss.step = trainer.global_step


@pytest.mark.slow
def test_a_diverging_run_ends_in_one_line_naming_the_first_bad_step(tmp_path, data_dir, train_config):
    # Validation every 20 steps, in calls of 20 steps: the loss goes nan at step 3, inside the first call, and
    # validation would draw the nan weights (TensorBoard's histogram raised over 69 lines).
    run = run_entry(
        "train.py",
        "debug=limit",
        "model.optimizer.lr=1e9",
        f"paths.data_dir={data_dir}",
        f"paths.log_dir={tmp_path / 'logs'}",
        check=False,
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr + run.stdout
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("error: training diverged and was stopped: the loss was nan at step ")
    # The reference: Lightning's own loop, one step per call, its losses read one by one.
    with pytest.raises(TrainingDiverged):
        train(
            train_config(
                "debug=limit",
                "model.optimizer.lr=1e9",
                "stepping=lightning",
                "~logger",
                f"+callbacks.reference._target_={__name__}.FirstNonFiniteLoss",
            )
        )
    assert FirstNonFiniteLoss.step is not None and FirstNonFiniteLoss.step < 20
    assert f" at step {FirstNonFiniteLoss.step} (epoch 0);" in line
    run_dir = next((tmp_path / "logs" / "train" / "runs").iterdir())
    assert not list(run_dir.glob("checkpoints/*.ckpt")) and not list(run_dir.glob("*.png"))


class LearningRateBlowsUp(Callback):
    """At the start of the second epoch the learning rate becomes infinite: the next step makes every weight nan
    or infinite, and the step after it has a nan loss."""

    stopped_at: int | None = None  # on the class: the test reads it after Hydra made the instance

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = math.inf

    def on_exception(self, trainer, pl_module, exception) -> None:
        LearningRateBlowsUp.stopped_at = trainer.global_step


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stepping", "stopped_at"),
    [
        # Epochs of 40 steps in calls of 40: the step count goes 40, 80, 120, never a multiple of the check's 50;
        # the first call ending past step 50, not the end of fit (120).
        pytest.param("model.steps_per_call=auto", 80, marks=needs_chunked, id="calls of 40"),
        pytest.param("stepping=lightning", 50, id="one step per call"),  # the check's own step
    ],
)
def test_a_run_diverging_in_its_second_epoch_stops_within_the_check_interval(train_config, stepping, stopped_at):
    # Nothing else reads the loss (no validation, no checkpoint) until the check passes 50.
    cfg = train_config(
        stepping,
        "~logger",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=40",
        "trainer.val_check_interval=40",
        "trainer.limit_val_batches=0",
        "callbacks.model_checkpoint=null",
        "callbacks.step_checkpoint=null",
        "+trainer.enable_checkpointing=false",
        "callbacks.convnet_pictures=null",
        "test=false",
        f"+callbacks.blows_up._target_={__name__}.LearningRateBlowsUp",
    )
    with pytest.raises(TrainingDiverged) as error:
        train(cfg)
    # Step 41 (the epoch's first) is computed with finite weights and makes them nan; step 42's loss is nan.
    assert "the loss was nan at step 42 (epoch 1)" in str(error.value)
    assert LearningRateBlowsUp.stopped_at == stopped_at


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
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)],
        cwd=PROJECT_ROOT,
        env={"PYTHONPATH": str(PROJECT_ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )
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
        assert str(error.value) == (f"the data folder {target} is not writable; set paths.data_dir=<a writable folder>")
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
    for name in (
        "subprocess.run",
        "subprocess.Popen",
        "subprocess.call",
        "subprocess.check_output",
        "os.system",
        "os.popen",
    ):
        for path, call in calls(name):
            assert not name.startswith("os."), f"{path}:{call.lineno} runs a shell"
            assert keyword(call, "shell") in (None, False), f"{path}:{call.lineno} uses shell=True"
            assert isinstance(call.args[0], (ast.List, ast.Name)), f"{path}:{call.lineno} passes a string command"


def test_a_source_failing_over_several_lines_still_gives_one_line(tmp_path):
    def mirrors_refused(target):  # the shape of torchvision's download error, one mirror per line
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried https://a/, got:\n"
            "<urlopen error [Errno 111] Connection refused>\n"
        )

    with pytest.raises(MnistUnavailableError) as error:
        ensure_mnist(tmp_path, sources=(mirrors_refused,))
    assert "\n" not in str(error.value)
    expected = "RuntimeError: Error downloading train-images-idx3-ubyte.gz: Tried https://a/, got: <urlopen"
    assert expected in str(error.value)


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
