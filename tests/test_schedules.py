"""Learning-rate schedules stepped per optimizer step (one-cycle, linear warm-up) give the same rate at every step
with several steps per call as with Lightning's own loop; what cannot be combined is refused; label smoothing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from pytorch_lightning import Callback

from conftest import CHUNKED, compose_config, needs_chunked
from convlens.tasks.train import train

LR = 0.05
# 2 epochs of 20 steps, validation and a step checkpoint every 10 (chunks of 10 steps with steps_per_call=auto).
RUN = (
    "trainer=cpu",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=20",
    "trainer.val_check_interval=10",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "callbacks.step_checkpoint.every_n_train_steps=10",
    f"model.optimizer.lr={LR}",
    "trainer.deterministic=true",
    "trainer.enable_model_summary=false",
    "callbacks.rich_progress_bar=null",
    "test=false",
    "~logger",
    "callbacks.convnet_pictures=null",
)
SCHEDULES = {
    "onecycle": ("model/scheduler=onecycle",),
    # a warm-up of 25 steps runs past the first epoch's end, where the cosine takes its first step
    "warmup_cosine": ("model/scheduler=warmup_cosine", "model.scheduler.warmup_steps=25"),
}
RATES: dict[str, list[float]] = {}
STEPPING = {"1": "stepping=lightning", "auto": "model.steps_per_call=auto"}


class LearningRates(Callback):
    """Writes down the learning rate each optimizer step uses, from a hook on the torch optimizer itself."""

    def __init__(self, name: str) -> None:
        self.rates = RATES[name] = []

    def on_train_start(self, trainer, pl_module):
        trainer.optimizers[0].register_step_pre_hook(
            lambda optimizer, args, kwargs: self.rates.append(optimizer.param_groups[0]["lr"])
        )


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    results = {}
    for schedule, overrides in SCHEDULES.items():
        for steps_per_call in ("1", "auto") if CHUNKED else ("1",):
            name = f"{schedule}_{steps_per_call}"
            run_dir = tmp_path_factory.mktemp(name)
            record = ["+callbacks.lrs._target_=test_schedules.LearningRates", f"+callbacks.lrs.name={name}"]
            cfg = compose_config(
                "train",
                [f"paths.data_dir={data_dir}", *RUN, *overrides, *record, STEPPING[steps_per_call]],
                run_dir,
            )
            train(cfg)
            results[name] = {
                "last": torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True),
                "rates": RATES[name],
            }
    return results


@pytest.mark.slow
@needs_chunked
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_per_step_schedules_step_in_chunks_exactly_as_lightnings_loop_does(runs, schedule):
    one, chunked = runs[f"{schedule}_1"], runs[f"{schedule}_auto"]
    assert len(one["rates"]) == 40
    assert chunked["rates"] == one["rates"]
    assert chunked["last"]["lr_schedulers"] == one["last"]["lr_schedulers"]
    for name, tensor in one["last"]["state_dict"].items():
        assert torch.equal(chunked["last"]["state_dict"][name], tensor), name


@pytest.mark.slow
def test_one_cycle_rises_to_the_learning_rate_and_ends_at_its_floor_on_the_last_step(runs):
    rates = runs["onecycle_1"]["rates"]
    assert rates[0] == pytest.approx(LR / 25)
    assert max(rates) == pytest.approx(LR) and rates.index(max(rates)) == 9  # pct_start 0.25 of 40 steps
    assert rates[-1] == pytest.approx(LR / 25 / 10_000)  # total_steps=auto counted the run's 40 steps


@pytest.mark.slow
def test_warm_up_multiplies_the_cosine_per_epoch(runs):
    rates = runs["warmup_cosine_1"]["rates"]
    cosine = [1.0] * 20 + [(1 + math.cos(math.pi / 2)) / 2] * 20  # T_max = 2 epochs, stepped after epoch 1
    warmup = [0.1 + 0.9 * min(step, 25) / 25 for step in range(40)]
    assert rates == pytest.approx([LR * w * c for w, c in zip(warmup, cosine, strict=True)], rel=1e-6)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            ("model/scheduler=onecycle", "model.cuda_graphs=true"),
            "model.cuda_graphs=true captures the step again whenever the learning rate changes",
            marks=needs_chunked,
        ),
        pytest.param(
            ("model/scheduler=warmup_constant", "model.cuda_graphs=true"),
            "model.cuda_graphs=true captures",
            marks=needs_chunked,
        ),
        (
            ("model/scheduler=onecycle", "+model.scheduler.warmup_steps=100"),
            r"model.scheduler.warmup_steps=100 with one-cycle, which sets the rate itself",
        ),
    ],
)
def test_what_cannot_be_combined_is_refused_in_one_line(train_config, overrides, message):
    with pytest.raises(InstantiationException, match=message):
        instantiate(train_config(*overrides).model)


def test_label_smoothing_zero_is_the_tutorials_loss_bit_for_bit_and_otherwise_exact(train_config):
    torch.manual_seed(0)
    logits, y = torch.randn(64, 10) * 3, torch.randint(0, 10, (64,))
    log_probs = F.log_softmax(logits, dim=1)
    plain = instantiate(train_config().model)
    assert torch.equal(plain.loss(log_probs, y), F.nll_loss(log_probs, y))
    smoothed = instantiate(train_config("model.label_smoothing=0.1").model)
    expected = 0.9 * F.nll_loss(log_probs, y) + 0.1 * (-log_probs.mean(dim=1)).mean()
    assert smoothed.loss(log_probs, y) == pytest.approx(expected.item(), rel=1e-6)
    assert smoothed.loss(log_probs, y) == pytest.approx(
        F.cross_entropy(logits, y, label_smoothing=0.1).item(), rel=1e-6
    )
