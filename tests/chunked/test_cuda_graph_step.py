"""GraphedStep on a CPU stand-in for CUDA graphs (tests/cpu_graphs.py): its own logic runs for real, on real digits,
inside real Lightning runs, and must train exactly as the eager steps do."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cpu_graphs import use_cpu_graphs
from hydra.utils import instantiate
from pytorch_lightning import Trainer

from conftest import compose_config
from convlens.chunked.classifier import ChunkedConvNetClassifier
from convlens.chunked.cuda_graph_step import GraphedStep
from convlens.tasks.train import train
from digit_folders import write_digit_folder

# 96 training images in batches of 20: each epoch is 4 full batches and a short one of 16. Dropout stays on.
RUN = (
    "data=imagefolder",
    "data.batch_size=20",
    "trainer.max_epochs=3",
    "trainer.val_check_interval=1.0",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "callbacks.convnet_pictures=null",
    "model.optimizer.lr=0.05",
    "logger=[]",
)
SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05, "momentum": 0.9}


@pytest.fixture(scope="module")
def digit_folder(data_dir, tmp_path_factory):
    return write_digit_folder(data_dir, tmp_path_factory.mktemp("digits"), per_class=40)


def config(digit_folder: Path, data_dir: Path, run_dir: Path, *overrides: str):
    return compose_config(
        "train",
        [
            "trainer=cpu",
            f"paths.data_dir={data_dir}",
            "callbacks.rich_progress_bar=null",
            "trainer.enable_model_summary=false",
            f"data.root={digit_folder}",
            *RUN,
            *overrides,
        ],
        run_dir,
    )


def fit(digit_folder: Path, data_dir: Path, run_dir: Path, *overrides: str) -> tuple[dict, dict]:
    metrics = train(config(digit_folder, data_dir, run_dir, *overrides))
    return metrics, torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.fixture(scope="module")
def eager(digit_folder, data_dir, tmp_path_factory):
    return {
        schedule: fit(
            digit_folder, data_dir, tmp_path_factory.mktemp(f"eager_{schedule}"), f"model/scheduler={schedule}"
        )
        for schedule in ("constant", "cosine")
    }


@pytest.mark.slow
@pytest.mark.parametrize(("schedule", "captures"), [("constant", 1), ("cosine", 3)])
def test_replayed_steps_train_exactly_as_eager_steps(
    eager, digit_folder, data_dir, tmp_path, monkeypatch, schedule, captures
):
    made = use_cpu_graphs(monkeypatch)
    metrics, last = fit(digit_folder, data_dir, tmp_path, f"model/scheduler={schedule}", "model.cuda_graphs=true")
    (graphed,) = made
    # The first step runs eagerly (no momentum buffers yet to capture), then every full batch is replayed and
    # every epoch's short last batch runs eagerly: 3 + 4 + 4 replays.
    assert graphed.replays == 11
    # A new capture only where the learning rate changed (cosine: each epoch); the short batches between replays
    # keep the gradient tensors the graph writes into, so they force none.
    assert graphed.captures == captures
    eager_metrics, eager_last = eager[schedule]
    assert last["global_step"] == eager_last["global_step"] == 15
    for name, tensor in eager_last["state_dict"].items():
        assert torch.equal(last["state_dict"][name], tensor), name
    momentum = [state["momentum_buffer"] for state in eager_last["optimizer_states"][0]["state"].values()]
    replayed = [state["momentum_buffer"] for state in last["optimizer_states"][0]["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(momentum, replayed, strict=True))
    for key in ("train/loss_epoch", "train/acc", "val/acc_best", "test/acc"):
        assert metrics[key] == eager_metrics[key], key


def test_capture_leaves_weights_momentum_and_random_state_as_they_were(monkeypatch):
    use_cpu_graphs(monkeypatch)
    torch.manual_seed(0)
    module = ChunkedConvNetClassifier(net={}, optimizer=SGD)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    module.loss_and_predictions((x, y))[0].backward()
    optimizer.step()  # the momentum buffers now exist
    weights = [p.detach().clone() for p in module.parameters()]
    momentum = [optimizer.state[p]["momentum_buffer"].clone() for p in module.parameters()]
    rng = torch.get_rng_state()

    step = GraphedStep(module, optimizer, x, y)
    step.capture()  # three warm-up steps, undone
    assert all(torch.equal(p, w) for p, w in zip(module.parameters(), weights, strict=True))
    assert all(
        torch.equal(optimizer.state[p]["momentum_buffer"], m)
        for p, m in zip(module.parameters(), momentum, strict=True)
    )
    assert torch.equal(torch.get_rng_state(), rng)
    assert (step.captures, step.replays) == (1, 0)

    step.step(x, y)  # the replay does train
    assert not torch.equal(next(module.parameters()), weights[0])
    assert (step.captures, step.replays) == (1, 1)
    assert not step.fits(x[:5])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (("model.optimizer.momentum=0",), "needs torch.optim.SGD with momentum above 0 (here: SGD, momentum 0)"),
        (
            ("model.optimizer._target_=torch.optim.Adam", "~model.optimizer.momentum", "~model.optimizer.nesterov"),
            "needs torch.optim.SGD with momentum above 0 (here: Adam, momentum none)",
        ),
        (
            ("trainer.precision=bf16-mixed",),
            "needs one GPU without DDP and trainer.precision=32-true (here: 1 x cpu, SingleDeviceStrategy, bf16-mixed)",
        ),
    ],
)
def test_what_cannot_be_captured_is_said_once_and_trains_eagerly(
    digit_folder, data_dir, tmp_path, monkeypatch, caplog, overrides, line
):
    made = use_cpu_graphs(monkeypatch)
    train(
        config(
            digit_folder, data_dir, tmp_path, "model.cuda_graphs=true", "trainer.max_epochs=1", "test=false", *overrides
        )
    )
    assert caplog.text.count("model.cuda_graphs=true needs") == 1
    assert f"model.cuda_graphs=true {line}; training steps run eagerly" in caplog.text
    assert made == []


def test_ddp_on_one_device_is_not_captured(monkeypatch, tmp_path):
    """The captured backward would fire DDP's gradient hooks, which the strategy prepares before each backward."""
    use_cpu_graphs(monkeypatch)
    module = ChunkedConvNetClassifier(net={}, optimizer=SGD, cuda_graphs=True)
    module.trainer = Trainer(accelerator="cpu", strategy="ddp", devices=1, logger=False, default_root_dir=tmp_path)
    assert module.what_stops_graphs() == (
        "one GPU without DDP and trainer.precision=32-true (here: 1 x cpu, DDPStrategy, 32-true)"
    )


@pytest.mark.slow
def test_a_second_fit_captures_its_own_graph(digit_folder, data_dir, tmp_path, monkeypatch):
    made = use_cpu_graphs(monkeypatch)
    cfg = config(digit_folder, data_dir, tmp_path, "model.cuda_graphs=true")
    model, datamodule = instantiate(cfg.model), instantiate(cfg.data)
    for fit_index in range(2):
        trainer = Trainer(
            accelerator="cpu",
            max_epochs=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            default_root_dir=tmp_path / str(fit_index),
        )
        trainer.fit(model, datamodule=datamodule)
    first, second = made
    assert model.graphed_step is second and first.captures == second.captures == 1
