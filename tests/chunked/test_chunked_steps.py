"""Many optimizer steps per call train exactly as one step per call: the same weights, metrics, validation
steps, checkpoint steps and TensorBoard step axis, on real MNIST; and the plan that cuts an epoch into calls."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from cpu_graphs import record_graphed_steps
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from pytorch_lightning import Callback, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose_config
from convlens.chunked.classifier import ChunkedConvNetClassifier
from convlens.chunked.plan import ChunkPlan
from convlens.chunked.step_batches import StepBatches
from convlens.errors import ConvlensError
from convlens.tasks.train import train

# 2 epochs of 25 steps, validation every 10 steps (after steps 10 and 20 of each epoch, never after step 25),
# a step checkpoint every 10, the loss written every 3 steps, a cosine schedule stepped per epoch.
RUN = (
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=25",
    "trainer.val_check_interval=10",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=3",
    "callbacks.step_checkpoint.every_n_train_steps=10",
    "model/scheduler=cosine",
    "model.optimizer.lr=0.02",
    "trainer.deterministic=true",
)


def scalar_steps(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    # One folder, one event file per trainer call (fit, test): the accumulator reads them all, in order.
    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    found = {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
        if "seconds" not in tag
    }  # timings differ run to run
    found.update(
        {tag: [(event.step, 0.0) for event in accumulator.Images(tag)] for tag in accumulator.Tags()["images"]}
    )
    return found


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    """The same seeded run with one step per call (Lightning's own loop) and with chunks of 5 and of 10 steps."""
    results = {}
    for steps_per_call in ("1", "5", "auto"):
        run_dir = tmp_path_factory.mktemp(f"steps_per_call_{steps_per_call}")
        overrides = [
            "trainer=cpu",
            f"paths.data_dir={data_dir}",
            "callbacks.rich_progress_bar=null",
            "trainer.enable_model_summary=false",
            "stepping=lightning" if steps_per_call == "1" else f"model.steps_per_call={steps_per_call}",
            *RUN,
        ]
        metrics = train(compose_config("train", overrides, run_dir))
        checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
        best = torch.load(metrics["best_ckpt"], weights_only=True)
        results[steps_per_call] = {
            "metrics": metrics,
            "last": checkpoint,
            "best": best,
            "scalars": scalar_steps(run_dir),
        }
    return results


@pytest.mark.slow
@pytest.mark.parametrize("chunked", ["5", "auto"])
def test_chunks_give_bit_identical_weights_and_metrics(runs, chunked):
    one, many = runs["1"], runs[chunked]
    for key in ("train/loss_epoch", "train/acc", "val/acc_best", "test/acc", "test/err", "steps", "epochs"):
        assert many["metrics"][key] == one["metrics"][key], key
    assert many["metrics"]["steps"] == 50
    for name, tensor in one["last"]["state_dict"].items():
        assert torch.equal(many["last"]["state_dict"][name], tensor), name
    momentum = [state["momentum_buffer"] for state in one["last"]["optimizer_states"][0]["state"].values()]
    chunk_momentum = [state["momentum_buffer"] for state in many["last"]["optimizer_states"][0]["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(momentum, chunk_momentum, strict=True))
    assert many["last"]["lr_schedulers"] == one["last"]["lr_schedulers"]


@pytest.mark.slow
@pytest.mark.parametrize("chunked", ["5", "auto"])
def test_chunks_keep_every_step_where_one_step_per_call_has_it(runs, chunked):
    one, many = runs["1"], runs[chunked]
    assert many["last"]["global_step"] == one["last"]["global_step"] == 50
    assert many["best"]["global_step"] == one["best"]["global_step"]
    assert set(many["scalars"]) == set(one["scalars"])
    for tag, events in one["scalars"].items():
        assert many["scalars"][tag] == events, tag
    # Validation after steps 10, 20 of each epoch (logged one below, as Lightning logs it), not after step 25.
    assert [step for step, _ in one["scalars"]["val/acc"]] == [9, 19, 34, 44]
    assert [step for step, _ in one["scalars"]["train/loss"]] == [
        2,
        5,
        8,
        11,
        14,
        17,
        20,
        23,
        26,
        29,
        32,
        35,
        38,
        41,
        44,
        47,
    ]


class TrainingCalls(Callback):
    """Writes down what each ``training_step`` call of a run was handed: one entry per call, its batches' sizes."""

    calls: list[list[int]] = []  # on the class: the test reads it after Hydra made the instance

    def on_fit_start(self, trainer, pl_module) -> None:
        TrainingCalls.calls = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        TrainingCalls.calls.append([len(y) for _, y in batch] if isinstance(batch, list) else [len(batch[1])])


@pytest.mark.slow
def test_the_chunked_run_really_took_several_steps_per_call(train_config):
    """Guards the comparison above: a real run with chunks of 5 made 5 calls an epoch, each handed 5 whole batches
    gathered at once, where one step per call made 25."""
    for steps_per_call, calls in (("5", [[64] * 5] * 10), ("1", [[64]] * 50)):
        metrics = train(
            train_config(
                f"model.steps_per_call={steps_per_call}",
                "test=false",
                "~logger",
                *RUN,
                f"+callbacks.calls._target_={__name__}.TrainingCalls",
            )
        )
        assert metrics["steps"] == 50 and TrainingCalls.calls == calls, steps_per_call


def test_the_plan_cuts_an_epoch_at_the_validation_interval():
    plan = ChunkPlan(steps_per_call=100, steps_per_epoch=938, val_every_steps=100)
    assert plan.calls_per_epoch == 10
    assert [plan.steps_in_call(i) for i in range(10)] == [100] * 9 + [38]
    assert [plan.validates_after(i) for i in range(10)] == [True] * 9 + [False]
    once_an_epoch = ChunkPlan(steps_per_call=938, steps_per_epoch=938, val_every_steps=938)
    assert once_an_epoch.calls_per_epoch == 1 and once_an_epoch.validates_after(0)
    halves = ChunkPlan(steps_per_call=20, steps_per_epoch=50, val_every_steps=40)
    assert [halves.validates_after(i) for i in range(3)] == [False, True, False]


def test_step_batches_cut_a_chunk_into_batches_with_a_short_last_one():
    images, labels = torch.arange(10.0).reshape(10, 1), torch.arange(10)
    batches = StepBatches(4, collate=lambda samples: samples)((images, labels))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([y for _, y in batches]), labels)


@pytest.mark.slow
def test_a_chunk_size_that_does_not_divide_the_interval_is_one_clear_line(train_config):
    with pytest.raises(
        ConvlensError,
        match=r"model.steps_per_call=3 must divide the validation interval \(10 steps\) "
        r"and every step-checkpoint interval \(10\)",
    ):
        train(train_config(*RUN, "model.steps_per_call=3"))


@pytest.mark.parametrize(
    ("val_check_interval", "every_n_train_steps", "steps_per_call"),
    [(100, 200, 100), (10, 4, 2), (40, 10, 10), (0.5, 0, 469)],
)
def test_auto_calls_end_at_every_validation_and_step_checkpoint(
    val_check_interval, every_n_train_steps, steps_per_call, tmp_path
):
    trainer = Trainer(
        val_check_interval=val_check_interval,
        logger=False,
        default_root_dir=tmp_path,
        callbacks=[ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=every_n_train_steps)],
    )
    assert ChunkPlan.for_trainer(trainer, 938, "auto").steps_per_call == steps_per_call


@pytest.mark.parametrize("value", ["0", "-2", "1.5", "many"])
def test_a_chunk_size_that_is_no_whole_number_is_refused(train_config, value):
    with pytest.raises(InstantiationException, match=f"model.steps_per_call={value} must be auto or a whole number"):
        instantiate(train_config(f"model.steps_per_call={value}").model)


@pytest.mark.slow
def test_cuda_graphs_requested_without_a_gpu_say_so_once_and_train_eagerly(runs, tmp_path, data_dir, caplog):
    overrides = [
        "trainer=cpu",
        f"paths.data_dir={data_dir}",
        "callbacks.rich_progress_bar=null",
        "trainer.enable_model_summary=false",
        "model.cuda_graphs=true",
        *RUN,
    ]
    metrics = train(compose_config("train", overrides, tmp_path))
    assert caplog.text.count("model.cuda_graphs=true needs one GPU") == 1
    weights = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for name, tensor in runs["auto"]["last"]["state_dict"].items():
        assert torch.equal(weights[name], tensor), name
    assert metrics["test/acc"] == runs["auto"]["metrics"]["test/acc"]


def test_cuda_graphs_need_several_steps_per_call(train_config):
    with pytest.raises(InstantiationException, match="model.cuda_graphs=true replays steps inside a chunk"):
        instantiate(train_config("model.cuda_graphs=true", "model.steps_per_call=1").model)


GPU_RUN = ("trainer=gpu", "callbacks.rich_progress_bar=null", "trainer.enable_model_summary=false", *RUN)
needs_a_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU; this machine has none")


@pytest.mark.slow
@needs_a_gpu
def test_graph_replay_trains_as_the_eager_steps_do(tmp_path, data_dir, monkeypatch):
    """Dropout on: each replay must draw fresh random numbers, the very ones the eager step draws (a replay uses
    the generator's offset as it stands and advances it, as an eager kernel does), so both runs agree closely."""
    made = record_graphed_steps(monkeypatch)
    results = {}
    for graphs in ("false", "true"):
        overrides = [f"paths.data_dir={data_dir}", f"model.cuda_graphs={graphs}", *GPU_RUN]
        metrics = train(compose_config("train", overrides, tmp_path / graphs))
        weights = torch.load(tmp_path / graphs / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        results[graphs] = metrics, weights
    (eager, eager_weights), (graphed, graphed_weights) = results["false"], results["true"]
    assert graphed["steps"] == eager["steps"] == 50
    # The first step is eager (no momentum buffers yet); the cosine rate changes once, after epoch 1: two
    # captures, and every other of the 2 x 25 full batches replayed.
    (step,) = made
    assert (step.captures, step.replays) == (2, 49)
    for name, tensor in eager_weights.items():
        assert torch.allclose(graphed_weights[name], tensor, atol=1e-4), name
    assert graphed["test/acc"] == pytest.approx(eager["test/acc"], abs=0.01)


@pytest.mark.slow
@needs_a_gpu
@pytest.mark.parametrize("graphs", ["false", "true"])
def test_a_step_waits_for_the_gpu_nowhere(tmp_path, data_dir, monkeypatch, graphs):
    """No host sync inside an optimizer step, eager or replayed (a capture synchronizes by design: not counted)."""
    made, synced = record_graphed_steps(monkeypatch), []
    one_step = ChunkedConvNetClassifier.one_step

    def watched_step(module, optimizer, x, y):
        captures = sum(step.captures for step in made)
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                loss = one_step(module, optimizer, x, y)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        if sum(step.captures for step in made) == captures:
            synced.extend(str(warning.message) for warning in caught if "synchroniz" in str(warning.message))
        return loss

    monkeypatch.setattr(ChunkedConvNetClassifier, "one_step", watched_step)
    train(
        compose_config(
            "train", [f"paths.data_dir={data_dir}", f"model.cuda_graphs={graphs}", "test=false", *GPU_RUN], tmp_path
        )
    )
    assert synced == []
