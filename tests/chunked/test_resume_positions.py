"""A resume continues at the very sample, step and validation where its checkpoint stopped, whatever the chunk size.

One uninterrupted run keeps a checkpoint every 50 steps; runs resumed from its mid-epoch checkpoint with the same
and with other ``model.steps_per_call`` must end with its weights, its step count and its validation steps.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from conftest import compose_config
from convlens.errors import ConvlensError
from convlens.tasks.train import train

pytestmark = pytest.mark.slow

RUN = [
    "trainer=cpu",
    "trainer.deterministic=true",
    "threads=1",
    "callbacks.rich_progress_bar=null",
    "callbacks.convnet_pictures=null",
    "trainer.enable_model_summary=false",
    "logger=csv",
    "test=false",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=200",
    "trainer.val_check_interval=50",
    "trainer.limit_val_batches=2",
    "callbacks.step_checkpoint.every_n_train_steps=50",
]
STEPS = 400


KEEP_EVERY_SAVE = [
    "callbacks.step_checkpoint.save_top_k=-1",
    '+callbacks.step_checkpoint.filename="{step}"',
    "+callbacks.step_checkpoint.auto_insert_metric_name=false",
]  # checkpoints/<step>.ckpt as well


def run(folder: Path, data_dir: Path, *extra: str) -> dict:
    return train(compose_config("train", [*RUN, f"paths.data_dir={data_dir}", *extra], folder))


def validation_steps(folder: Path) -> list[int]:
    rows = csv.DictReader((folder / "csv" / "metrics.csv").open())
    return [int(row["step"]) for row in rows if row.get("val/acc")]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir) -> Path:
    folder = tmp_path_factory.mktemp("uninterrupted")
    run(folder, data_dir, *KEEP_EVERY_SAVE)
    return folder


@pytest.mark.parametrize(
    "chunking",
    [[], ["model.steps_per_call=25"], ["stepping=lightning"]],
    ids=["same calls", "calls of 25", "one step per call"],
)
def test_a_mid_epoch_resume_in_any_calls_ends_exactly_like_the_uninterrupted_run(
    uninterrupted, tmp_path, data_dir, chunking
):
    stopped_at = uninterrupted / "checkpoints" / "150.ckpt"  # step 150 of epoch 0, saved after its validation
    metrics = run(tmp_path, data_dir, f"ckpt_path={stopped_at}", *chunking)
    assert metrics["steps"] == STEPS and metrics["epochs"] == 2
    assert validation_steps(tmp_path) == [step for step in validation_steps(uninterrupted) if step > 150]
    resumed, whole = weights(tmp_path), weights(uninterrupted)
    assert resumed.keys() == whole.keys() and all(torch.equal(resumed[name], whole[name]) for name in whole)


def test_a_resume_into_calls_that_cannot_start_where_it_stopped_is_refused(uninterrupted, tmp_path, data_dir):
    stopped_at = uninterrupted / "checkpoints" / "150.ckpt"
    with pytest.raises(ConvlensError) as refused:  # validation every 100 steps: auto makes calls of 100
        run(
            tmp_path,
            data_dir,
            f"ckpt_path={stopped_at}",
            "trainer.val_check_interval=100",
            "callbacks.step_checkpoint.every_n_train_steps=100",
        )
    assert str(refused.value).startswith(
        "model.steps_per_call=100 (calls of 100 optimizer steps) cannot start after "
        "step 150 of the epoch, where this checkpoint stopped; resume with "
        "model.steps_per_call=50"
    )
    assert not (tmp_path / "checkpoints").exists()


def test_a_mid_epoch_resume_with_another_batch_size_is_refused_and_one_at_an_epoch_end_goes_on(
    uninterrupted, tmp_path, data_dir
):
    with pytest.raises(ConvlensError) as refused:
        run(tmp_path / "mid", data_dir, f"ckpt_path={uninterrupted / 'checkpoints' / '150.ckpt'}", "data.batch_size=32")
    assert "data.batch_size=32, but this checkpoint stopped after step 150 of an epoch of batches of 64" in str(
        refused.value
    ) and "resume with data.batch_size=64" in str(refused.value)
    metrics = run(
        tmp_path / "end", data_dir, f"ckpt_path={uninterrupted / 'checkpoints' / '200.ckpt'}", "data.batch_size=32"
    )
    assert metrics["steps"] == 400 and metrics["epochs"] == 2


def test_a_run_stopped_by_max_steps_goes_on_to_the_epochs_it_asks_for(uninterrupted, tmp_path, data_dir):
    run(tmp_path / "first", data_dir, "+trainer.max_steps=300")
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 300
    metrics = run(tmp_path / "then", data_dir, f"ckpt_path={last}")
    assert metrics["steps"] == STEPS and metrics["epochs"] == 2
    assert validation_steps(tmp_path / "then") == [step for step in validation_steps(uninterrupted) if step > 300]
    resumed, whole = weights(tmp_path / "then"), weights(uninterrupted)
    assert all(torch.equal(resumed[name], whole[name]) for name in whole)


def test_resuming_a_finished_run_leaves_its_last_checkpoint_and_training_figures(uninterrupted, tmp_path, data_dir):
    metrics = run(tmp_path, data_dir, f"ckpt_path={uninterrupted / 'checkpoints' / 'last.ckpt'}")
    whole = json.loads((uninterrupted / "metrics.json").read_text())
    assert metrics["steps"] == STEPS
    assert {key: metrics[key] for key in ("train/loss_epoch", "train/acc")} == {
        key: whole[key] for key in ("train/loss_epoch", "train/acc")
    } and whole["train/acc"] is not None
    resumed = weights(tmp_path)  # the final step, in this run's own folder
    assert all(torch.equal(resumed[name], value) for name, value in weights(uninterrupted).items())
