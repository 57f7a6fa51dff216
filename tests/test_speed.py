"""The speed work changes no numbers: in-memory batches equal the tutorial's per-item ones, in the same order,
and train to the same weights; and the benchmark script runs end to end and writes every field it promises."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pytorch_lightning import seed_everything

from conftest import compose_config
from convlens.data.mnist_datamodule import MNISTDataModule
from convlens.startup.run_task import PROJECT_ROOT
from convlens.tasks.train import train

pytestmark = pytest.mark.slow

TINY_RUN = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=30",
    "trainer.val_check_interval=15",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "model.optimizer.lr=0.01",
)


def first_training_batches(data_dir: Path, in_memory: bool, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    datamodule = MNISTDataModule(str(data_dir), in_memory=in_memory)
    datamodule.setup("fit")
    seed_everything(7)
    batches = []
    for x, y in datamodule.train_dataloader():
        batches.append((x, y))
        if len(batches) == count:
            return batches
    return batches


def test_in_memory_and_per_item_loading_give_the_same_training_batches_in_the_same_order(data_dir):
    in_memory = first_training_batches(data_dir, in_memory=True, count=5)
    per_item = first_training_batches(data_dir, in_memory=False, count=5)
    for (xa, ya), (xb, yb) in zip(in_memory, per_item, strict=True):
        assert xa.shape == (64, 1, 28, 28)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(in_memory[0][1], in_memory[1][1])  # the batches are really shuffled, not all alike


def test_in_memory_and_per_item_loading_train_to_the_same_metrics_and_weights(data_dir, tmp_path):
    results = {}
    for in_memory in (True, False):
        run_dir = tmp_path / f"in_memory_{in_memory}"
        overrides = [
            "trainer=cpu",
            f"paths.data_dir={data_dir}",
            "callbacks.rich_progress_bar=null",
            "trainer.enable_model_summary=false",
            f"data.in_memory={in_memory}",
            *TINY_RUN,
        ]
        metrics = train(compose_config("train", overrides, run_dir))
        weights = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        results[in_memory] = metrics, weights
    (fast, fast_weights), (slow, slow_weights) = results[True], results[False]
    for key in ("train/loss_epoch", "train/acc", "val/acc_best", "test/acc", "steps"):
        assert fast[key] == slow[key], key
    assert fast["steps"] == 30
    assert fast_weights.keys() == slow_weights.keys()
    for name, tensor in fast_weights.items():
        assert torch.equal(tensor, slow_weights[name]), name


def test_benchmark_runs_every_side_with_the_limits_and_writes_every_field(data_dir, tmp_path):
    out = tmp_path / "benchmark.json"
    command = [
        sys.executable,
        str(PROJECT_ROOT / "scripts" / "benchmark.py"),
        "--epochs",
        "1",
        "--runs",
        "1",
        "--limit-train-batches",
        "4",
        "--limit-val-batches",
        "1",
        "--limit-test-batches",
        "1",
        "--val-check-interval",
        "2",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "trainer=cpu",
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "B/A" in result.stdout and "B/F" in result.stdout and str(out) in result.stdout.replace("\n", "")

    report = json.loads(out.read_text())
    measures = {"wall_seconds", "seconds_per_epoch", "cpu_seconds", "peak_rss_mb", "test_acc"}
    assert report["sides"] == ["A", "B", "F"] and report["device"] == "cpu"  # G, the CUDA graph, only on a GPU
    for side in ("A", "B", "F"):
        assert set(report[side]) == measures
        for key in measures:
            assert set(report[side][key]) == {"median", "min", "max"}
        (run,) = report[f"runs_{side}"]
        assert run["steps"] == 4  # the limits reached the tutorial loop, src/train.py and the floor
        assert run["wall_seconds"] > run["seconds_per_epoch"] > 0
        assert run["peak_rss_mb"] > 50 and 0 <= run["test_acc"] <= 1
    assert set(report["ratios"]) == {"B/A", "B/F"}
    for name, side in (("B/A", "A"), ("B/F", "F")):
        assert set(report["ratios"][name]) == measures
        assert report["ratios"][name]["wall_seconds"] == pytest.approx(
            report["B"]["wall_seconds"]["median"] / report[side]["wall_seconds"]["median"], rel=1e-2
        )
    assert report["epochs"] == 1 and report["runs"] == 1 and report["overrides_B"] == ["trainer=cpu"]
    assert report["machine"]["cores"] >= 1 and report["date"]
    assert any("peak memory" in line for line in report["verdicts"])


@pytest.mark.slow
def test_benchmark_times_another_checkout_as_p_in_the_same_rotation(data_dir, tmp_path):
    """``--before-root``: a before/after in one run; here the checkout is this one, so P runs what B runs."""
    out = tmp_path / "benchmark.json"
    limits = ["--limit-train-batches", "4", "--limit-val-batches", "1", "--limit-test-batches", "1"]
    command = [sys.executable, str(PROJECT_ROOT / "scripts" / "benchmark.py"), "--epochs", "1", "--runs", "1"]
    command += [*limits, "--val-check-interval", "2", "--data-dir", str(data_dir), "--out", str(out)]
    command += ["--before-root", str(PROJECT_ROOT), "trainer=cpu"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["sides"] == ["A", "B", "F", "P"] and report["before_root"] == str(PROJECT_ROOT)
    assert set(report["ratios"]) == {"B/A", "B/F", "B/P", "P/A"}
    assert report["runs_P"][0]["steps"] == report["runs_B"][0]["steps"] == 4
    assert report["ratios"]["P/A"]["wall_seconds"] == pytest.approx(
        report["P"]["wall_seconds"]["median"] / report["A"]["wall_seconds"]["median"], rel=1e-2
    )
