"""Real Lightning runs on real MNIST, kept short with limit_*_batches."""

import csv
import json
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import compose_config, run_entry
from convlens.models.classifier import ConvNetClassifier
from convlens.tasks.train import set_float32_precision, train
from digit_folders import write_digit_folder

pytestmark = pytest.mark.slow

SHORT_RUN = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=150",
    "trainer.val_check_interval=75",
    "trainer.limit_val_batches=2",
    "model.optimizer.lr=0.01",
)


def test_a_short_run_learns_beyond_80_percent(train_config, tmp_path):
    metrics = train(train_config(*SHORT_RUN))
    assert metrics["val/acc_best"] > 0.80
    assert metrics["steps"] == 150
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test/acc"] == pytest.approx(metrics["test/acc"]) and saved["test/acc"] > 0.80
    assert {"test/err", "epochs", "wall_seconds", "best_ckpt"} <= saved.keys()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def logged_rows(run_dir: Path) -> list[dict[str, str]]:
    (path,) = run_dir.glob("csv/**/metrics.csv")
    return list(csv.DictReader(path.open()))


@pytest.mark.parametrize("every", [1, 10])
def test_step_loss_is_logged_every_n_steps_and_the_epoch_mean_matches_it(train_config, tmp_path, every):
    metrics = train(
        train_config(
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=30",
            "trainer.val_check_interval=30",
            "trainer.limit_val_batches=1",
            "test=false",
            "logger=csv",
            f"trainer.log_every_n_steps={every}",
        )
    )
    rows = logged_rows(tmp_path)
    step_losses = {int(row["step"]): float(row["train/loss"]) for row in rows if row.get("train/loss")}
    assert sorted(step_losses) == list(range(every - 1, 30, every))
    (epoch_row,) = [row for row in rows if row.get("train/loss_epoch")]
    assert float(epoch_row["train/loss_epoch"]) == pytest.approx(metrics["train/loss_epoch"], abs=1e-6)
    assert 0 < metrics["train/acc"] < 1
    assert float(epoch_row["train/acc"]) == pytest.approx(metrics["train/acc"], abs=1e-6)
    if every == 1:  # every batch has 64 images, so the epoch's mean is the plain mean of the step losses
        assert metrics["train/loss_epoch"] == pytest.approx(sum(step_losses.values()) / 30, rel=1e-5)


def test_resuming_from_last_ckpt_continues_the_global_step(train_config, tmp_path):
    train(
        train_config(
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=20",
            "trainer.val_check_interval=10",
            "trainer.limit_val_batches=1",
            "test=false",
        )
    )
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 20

    resumed = train(
        train_config(
            "trainer.max_epochs=2",
            "trainer.limit_train_batches=20",
            "trainer.val_check_interval=10",
            "trainer.limit_val_batches=1",
            "test=false",
            f"ckpt_path={last}",
        )
    )
    assert resumed["steps"] == 40 and resumed["epochs"] == 2


def test_train_then_eval_entry_points_agree_on_test_accuracy(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_entry(
        "train.py",
        *SHORT_RUN,
        "trainer=cpu",
        "data.val_size=5000",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
    )
    trained = json.loads((run_dir / "metrics.json").read_text())

    eval_dir = tmp_path / "eval"
    result = run_entry(
        "eval.py",
        f"ckpt_path={trained['best_ckpt']}",
        "trainer=cpu",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={eval_dir}",
    )
    evaluated = json.loads((eval_dir / "metrics.json").read_text())

    assert evaluated["test/acc"] == trained["test/acc"]
    assert f"{trained['test/acc']:.4f}" in result.stdout


def test_eval_with_a_missing_checkpoint_says_so_in_one_line(tmp_path):
    result = run_entry("eval.py", f"ckpt_path={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path}", check=False)
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_eval_with_a_file_that_is_not_a_checkpoint_says_so(tmp_path):
    bogus = tmp_path / "notes.ckpt"
    bogus.write_text("these are notes, not weights")
    result = run_entry("eval.py", f"ckpt_path={bogus}", f"hydra.run.dir={tmp_path / 'eval'}", check=False)
    assert result.returncode == 1
    assert "is not a checkpoint" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when there is no GPU")
def test_gpu_trainer_without_a_gpu_fails_clearly(tmp_path):
    result = run_entry("train.py", "trainer=gpu", f"hydra.run.dir={tmp_path}", check=False)
    assert result.returncode == 1
    assert "trainer=cpu" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_epoch_loss_weighs_a_short_batch_by_its_images(data_dir, tmp_path):
    """96 images in batches of 20: four steps of 20 and one of 16. The epoch's loss is the mean over images."""
    folder = write_digit_folder(data_dir, tmp_path / "digits", per_class=40)
    run_dir = tmp_path / "run"
    metrics = train(
        compose_config(
            "train",
            [
                "trainer=cpu",
                f"paths.data_dir={data_dir}",
                "callbacks.rich_progress_bar=null",
                "callbacks.convnet_pictures=null",
                "trainer.enable_model_summary=false",
                "data=imagefolder",
                f"data.root={folder}",
                "data.batch_size=20",
                "trainer.max_epochs=1",
                "trainer.val_check_interval=1.0",
                "trainer.limit_val_batches=1",
                "test=false",
                "logger=csv",
                "trainer.log_every_n_steps=1",
                "model.optimizer.lr=0.05",
            ],
            run_dir,
        )
    )
    step_losses = [float(row["train/loss"]) for row in logged_rows(run_dir) if row.get("train/loss")]
    sizes = [20, 20, 20, 20, 16]
    assert len(step_losses) == len(sizes)
    by_image = sum(loss * size for loss, size in zip(step_losses, sizes, strict=True)) / sum(sizes)
    assert metrics["train/loss_epoch"] == pytest.approx(by_image, rel=2e-6)
    assert abs(by_image - sum(step_losses) / len(sizes)) > 1e-4  # the test can tell a plain mean of the steps


@pytest.mark.parametrize("precision", ["highest", "high", "medium"])
def test_float32_precision_covers_cudnn_convolutions(precision):
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    try:
        set_float32_precision(precision)
        assert torch.get_float32_matmul_precision() == precision
        assert torch.backends.cudnn.allow_tf32 is (precision != "highest")  # "highest" is exact float32 throughout
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]


class TensorsFromHostData(TorchDispatchMode):
    """Counts tensors made from Python numbers: on a GPU each is a copy from the host that waits for the device."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func is torch.ops.aten.lift_fresh.default
        return func(*args, **(kwargs or {}))


def test_a_steps_metric_update_makes_no_tensor_from_host_numbers():
    module = ConvNetClassifier(net={}, optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01})
    loss, preds, y = torch.tensor(2.0), torch.zeros(16, dtype=torch.long), torch.zeros(16, dtype=torch.long)
    with TensorsFromHostData() as recorded:
        module.train_metrics_update(loss, preds, y)
    assert recorded.count == 0
