"""What every setting in ``conf/`` accepts: its type and range, one line per key.

``convlens.startup.config_checks`` reads this table before anything runs, so a wrong value is one sentence naming
the key; tests/test_config_rules.py composes every config in ``conf/`` and fails for a key missing here.
A new key in ``conf/`` therefore needs one line below, e.g. ``"data.batch_size": integer(1, example=64),``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from convlens.export.formats import FORMATS

LIGHTNING_PRECISIONS = (
    "64-true",
    "64",
    64,
    "32-true",
    "32",
    32,
    "16-true",
    "16-mixed",
    "16",
    16,
    "bf16-true",
    "bf16-mixed",
    "bf16",
    "transformer-engine",
    "transformer-engine-float16",
)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def is_kind(value: Any, kinds: Sequence[type]) -> bool:
    """Type check in which a bool is not an integer and an integer is also a float."""
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, tuple(kinds))


@dataclass(frozen=True)
class Rule:
    """One key's declaration: the Python types it takes, the range within them, and how to say both."""

    kinds: tuple[type, ...]
    expected: str  # completes "<key>=<value> must be ..."
    example: str  # a good value, shown as the fix
    in_range: Callable[[Any], bool] = lambda value: True
    null: bool = False
    out_of_range: tuple[Any, ...] = ()  # values of the right type that must be refused (the config-tree test uses them)

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.null
        return is_kind(value, self.kinds) and self.in_range(value)

    def wrong_type(self) -> Any:
        """A value of a type this key never takes (the config-tree test sets it)."""
        return next(value for value in ("abc", [1, 2], {"a": 1}, 1.5) if not is_kind(value, self.kinds))


def spelled(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"above {low}" if low_open else f"at least {low}")
    if high is not None:
        parts.append(f"below {high}" if high_open else f"at most {high}")
    return " and ".join(parts)


def between(value: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    return above and below


def integer(low: int | None = None, high: int | None = None, *, example: int, null: bool = False) -> Rule:
    words = "a positive integer" if (low, high) == (1, None) else f"an integer {spelled(low, high, False, False)}"
    return Rule(
        (int,),
        words + (" or null" if null else ""),
        str(example),
        lambda value: between(value, low, high, False, False),
        null,
        tuple(
            bound
            for bound in (None if low is None else low - 1, None if high is None else high + 1)
            if bound is not None
        ),
    )


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    example: float,
) -> Rule:
    words = (
        f"a number {spelled(low, high, low_open, high_open)}"
        if high is None
        else spelled(low, high, low_open, high_open)
    )
    outside = [] if low is None else [low if low_open else low - 0.5]
    outside += [] if high is None else [high if high_open else high + 0.5]
    return Rule(
        (float,),
        words,
        str(example),
        lambda value: between(value, low, high, low_open, high_open),
        out_of_range=tuple(outside),
    )


def flag(example: bool = True) -> Rule:
    return Rule((bool,), "true or false", str(example).lower())


def choice(*options: Any, null: bool = False) -> Rule:
    kinds = tuple({type(option) for option in options})
    return Rule(
        kinds,
        "one of " + ", ".join(map(str, options)) + (" or null" if null else ""),
        str(options[0]),
        lambda value: value in options,
        null,
        ("nope",) if str in kinds else (),
    )


def text(example: str, *, null: bool = False, what: str = "a text") -> Rule:
    return Rule((str,), what + (" or null" if null else ""), example, lambda value: value != "", null, ("",))


def path(example: str, *, null: bool = False) -> Rule:
    return text(example, null=null, what="a path")


def custom(
    kinds: tuple[type, ...],
    expected: str,
    example: str,
    in_range: Callable[[Any], bool],
    out_of_range: tuple[Any, ...],
    null: bool = False,
) -> Rule:
    return Rule(kinds, expected, example, in_range, null, out_of_range)


def group_node(options: str) -> Rule:
    """A key that a config group fills (``model.scheduler``, ``augment``): set as ``group=option``, or null."""
    return custom((dict,), f"chosen as a group: {options}", "null", lambda value: False, (), null=True)


def batches_or_fraction(value: Any) -> bool:
    """Lightning's limit_*_batches: a count of batches, or a fraction of them."""
    return (value >= 0) if isinstance(value, int) else 0 <= value <= 1


def interval(value: Any) -> bool:
    """val_check_interval: a count of training batches, a fraction of an epoch, or a duration Lightning parses."""
    if isinstance(value, int):
        return value >= 1
    if isinstance(value, float):
        return 0 < value <= 1
    return value != ""


def devices(value: Any) -> bool:
    if isinstance(value, int):
        return value >= 1 or value == -1
    if isinstance(value, list):
        return bool(value) and all(is_kind(device, (int,)) and device >= 0 for device in value)
    return value != ""


def int_list(low: int, length: int | None = None) -> Callable[[Any], bool]:
    def ok(value: Any) -> bool:
        return (
            (length is None or len(value) == length)
            and bool(value)
            and all(is_kind(item, (int,)) and item >= low for item in value)
        )

    return ok


def text_list(value: Any) -> bool:
    return all(isinstance(item, str) and item for item in value)


def image_side(value: Any) -> bool:
    return value >= 4 and value % 4 == 0


COLORMAP = text("viridis", what="a matplotlib colour map name")
CHECKPOINT = path("<run dir>/checkpoints/last.ckpt", null=True)
LIMIT = custom(
    (int, float),
    "a number of batches (integer >= 0), a fraction in [0, 1], or null",
    "null",
    batches_or_fraction,
    (-1, 1.5),
    null=True,
)

RULES: dict[str, Rule] = {
    # conf/train.yaml, eval.yaml, predict.yaml, visualize.yaml
    "task_name": text("train"),
    "run_name": text("bigger-lr", null=True, what="a name of letters, digits and _ . + -"),
    "seed": integer(0, 2**32 - 1, example=12345, null=True),
    "threads": integer(1, example=1, null=True),
    "ckpt_path": CHECKPOINT,
    "compare_ckpt_path": CHECKPOINT,
    "test": flag(),
    "optimized_metric": text("val/acc_best", what="a metric name"),
    "float32_matmul_precision": choice("highest", "high", "medium"),
    "images": custom(
        (str, list),
        "a file, a folder or a list [a.png,b.png]",
        "my_digit.png",
        lambda value: value != "" and (isinstance(value, str) or text_list(value)),
        ("",),
        null=True,
    ),
    "image": path("my_digit.png", null=True),
    "convert": choice("auto", "digit", "resize"),
    "top_k": integer(1, example=3),
    "batch_size": integer(1, example=256),
    "index": integer(0, 9999, example=100),
    "out_dir": path("pictures"),
    "format": choice(*FORMATS),
    "check_images": integer(1, example=1000),
    "tolerance": number(0, low_open=True, example=1e-5),
    # conf/paths
    "paths.root_dir": path("."),
    "paths.data_dir": path("data"),
    "paths.log_dir": path("logs"),
    "paths.output_dir": path("<run dir>"),
    # conf/data
    "data.data_dir": path("data"),
    "data.root": path("/path/to/images", null=True),
    "data.class_names": custom((list,), "a list of class names", "[cat,dog]", text_list, (), null=True),
    "data.num_classes": integer(2, example=10),
    "data.image_size": custom((int,), "a positive multiple of 4", "28", image_side, (0, 30)),
    "data.batch_size": integer(1, example=64),
    "data.eval_batch_size": integer(1, example=500),
    "data.val_size": integer(1, 9999, example=5000),
    "data.val_fraction": number(0, 1, high_open=True, example=0.1),
    "data.test_fraction": number(0, 1, high_open=True, example=0.1),
    "data.split_seed": integer(0, 2**32 - 1, example=0),
    "data.in_memory": flag(),
    "data.num_workers": integer(0, example=0),
    "data.pin_memory": flag(),
    # conf/model
    "model.net.depth": custom(
        (list,), "two positive integers (channels of conv1 and conv2)", "[4,8]", int_list(1, length=2), ([4], [4, 0])
    ),
    "model.net.hidden": integer(1, example=512),
    "model.net.dropout": number(0, 1, high_open=True, example=0.5),
    "model.net.image_size": custom((int,), "a positive multiple of 4", "28", image_side, (0, 30)),
    "model.net.num_classes": integer(2, example=10),
    "model.steps_per_call": custom(
        (str, int),
        "auto or a whole number of optimizer steps >= 1",
        "auto",
        lambda value: value == "auto" or (isinstance(value, int) and value >= 1),
        (0, -1, "many"),
    ),
    "model.cuda_graphs": flag(False),
    "model.optimizer.lr": number(0, low_open=True, example=0.001),
    "model.optimizer.momentum": number(0, 1, high_open=True, example=0.9),
    "model.optimizer.weight_decay": number(0, example=0.0005),
    "model.optimizer.nesterov": flag(False),
    "model.label_smoothing": number(0, 1, high_open=True, example=0.1),
    "model.class_names": custom((list,), "a list of class names", "[cat,dog]", text_list, (), null=True),
    "model.scheduler": group_node("model/scheduler=cosine or model/scheduler=constant"),
    "model.scheduler.T_max": integer(1, example=20),
    "model.scheduler.eta_min": number(0, example=0.0),
    "model.scheduler.factor": number(0, 1, low_open=True, example=1.0),
    "model.scheduler.total_iters": integer(0, example=0),
    "model.scheduler.interval": choice("epoch", "step"),
    "model.scheduler.warmup_steps": integer(0, example=500),
    "model.scheduler.warmup_start_factor": number(0, 1, low_open=True, example=0.1),
    "model.scheduler.max_lr": number(0, low_open=True, example=0.05),
    "model.scheduler.total_steps": custom(
        (str, int),
        "auto or a number of optimizer steps >= 1",
        "auto",
        lambda value: value == "auto" or (isinstance(value, int) and value >= 1),
        (0, "many"),
    ),
    "model.scheduler.pct_start": number(0, 1, low_open=True, high_open=True, example=0.25),
    "model.scheduler.anneal_strategy": choice("cos", "linear"),
    "model.scheduler.div_factor": number(0, low_open=True, example=25.0),
    "model.scheduler.final_div_factor": number(0, low_open=True, example=10000.0),
    "model.scheduler.cycle_momentum": flag(False),
    # conf/augment
    "augment": group_node("augment=shift, augment=affine or augment=elastic"),
    "augment.max_shift_px": number(0, example=2.0),
    "augment.max_rotation_deg": number(0, 180, example=10.0),
    "augment.max_scale_change": number(0, 1, high_open=True, example=0.1),
    "augment.elastic_alpha_px": number(0, example=34.0),
    "augment.elastic_sigma_px": number(0, low_open=True, example=4.0),
    # conf/app.yaml
    "app.host": text("127.0.0.1", what="a host name or address"),
    "app.port": integer(1, 65535, example=7860),
    "app.canvas_px": integer(28, example=280),
    "app.brush_px": integer(1, example=12),
    "app.input_column_px": integer(100, example=320),
    "app.checkpoint_column_px": integer(100, example=420),
    # conf/trainer
    "trainer.default_root_dir": path("<run dir>"),
    "trainer.accelerator": choice(*ACCELERATORS),
    "trainer.devices": custom(
        (int, str, list),
        "a device count (>= 1, or -1 for all), a list of device indices, or auto",
        "1",
        devices,
        (0, -2, []),
    ),
    "trainer.num_nodes": integer(1, example=1),
    "trainer.strategy": text("auto", what="a Lightning strategy name"),
    "trainer.sync_batchnorm": flag(False),
    "trainer.use_distributed_sampler": flag(False),
    "trainer.max_epochs": integer(1, example=20),
    "trainer.val_check_interval": custom(
        (int, float, str),
        "a number of training batches (integer >= 1), a fraction of an epoch in (0, 1], or a duration DD:HH:MM:SS",
        "100",
        interval,
        (0, -1, 0.0, 1.5),
        null=True,
    ),
    "trainer.check_val_every_n_epoch": integer(1, example=1, null=True),
    "trainer.log_every_n_steps": integer(1, example=50),
    "trainer.deterministic": choice(False, True, "warn"),
    "trainer.precision": choice(*LIGHTNING_PRECISIONS),
    "trainer.enable_model_summary": flag(),
    "trainer.limit_train_batches": LIMIT,
    "trainer.limit_val_batches": LIMIT,
    "trainer.limit_test_batches": LIMIT,
    "trainer.fast_dev_run": custom(
        (bool, int), "true, false or a number of batches (integer >= 0)", "true", lambda value: value >= 0, (-1,)
    ),
    "trainer.plugins": custom((list,), "a list of Lightning plugins", "[]", lambda value: True, (), null=True),
    # conf/callbacks
    "callbacks.model_checkpoint.dirpath": path("<run dir>/checkpoints"),
    "callbacks.model_checkpoint.filename": text("best-epoch{epoch:02d}", what="a file name pattern"),
    "callbacks.model_checkpoint.auto_insert_metric_name": flag(False),
    "callbacks.model_checkpoint.monitor": text("val/acc", null=True, what="a logged metric name"),
    "callbacks.model_checkpoint.mode": choice("max", "min"),
    "callbacks.model_checkpoint.save_top_k": integer(-1, example=1),
    "callbacks.model_checkpoint.save_last": flag(),
    "callbacks.model_checkpoint.enable_version_counter": flag(False),
    "callbacks.model_checkpoint.save_on_train_epoch_end": flag(False),
    "callbacks.step_checkpoint.dirpath": path("<run dir>/checkpoints"),
    "callbacks.step_checkpoint.save_top_k": integer(-1, example=0),
    "callbacks.step_checkpoint.save_last": flag(),
    "callbacks.step_checkpoint.every_n_train_steps": integer(1, example=200, null=True),
    "callbacks.step_checkpoint.enable_version_counter": flag(False),
    "callbacks.step_checkpoint.save_on_train_epoch_end": flag(False),
    "callbacks.finite_loss.check_every_n_steps": integer(1, example=50),
    "callbacks.stop_on_signal.filename": text("last.ckpt", what="a file name"),
    "callbacks.rich_progress_bar.refresh_rate": integer(0, example=10),
    "callbacks.rich_progress_bar.metrics_every_n_batches": integer(1, example=50),
    "callbacks.convnet_pictures.probe_indices": custom(
        (list,), "a list of test-set indices (integers 0 to 9999)", "[100]", int_list(0), ([-1], [])
    ),
    "callbacks.convnet_pictures.every_n_checks": integer(1, example=1),
    "callbacks.convnet_pictures.tensorboard_tile_px": integer(1, example=1),
    "callbacks.convnet_pictures.augmentation_images": integer(1, example=16),
    "callbacks.convnet_pictures.style.tile_px": integer(1, example=80),
    "callbacks.convnet_pictures.style.separator_px": integer(0, example=2),
    "callbacks.convnet_pictures.style.colormap": COLORMAP,
    "callbacks.convnet_pictures.style.title_px": integer(1, example=24),
    # conf/logger
    "logger.tensorboard.save_dir": path("<run dir>"),
    "logger.tensorboard.name": text("tensorboard", what="a folder name"),
    "logger.tensorboard.version": custom(
        (str, int), "a folder name, a number or null", '""', lambda value: True, (), null=True
    ),
    "logger.tensorboard.default_hp_metric": flag(False),
    "logger.csv.save_dir": path("<run dir>"),
    "logger.csv.name": text("csv", what="a folder name"),
    "logger.csv.version": custom(
        (str, int), "a folder name, a number or null", '""', lambda value: True, (), null=True
    ),
    "logger.mlflow.experiment_name": text("convlens", what="an experiment name"),
    "logger.mlflow.run_name": text("bigger-lr", null=True, what="a run name"),
    "logger.mlflow.tracking_uri": text("sqlite:///logs/mlflow/mlflow.db", what="an MLflow tracking URI"),
    "logger.mlflow.artifact_location": path("logs/mlflow/artifacts", null=True),
    "logger.mlflow.log_model": flag(False),
    "logger.wandb.project": text("convlens", what="a W&B project name"),
    "logger.wandb.name": text("bigger-lr", null=True, what="a run name"),
    "logger.wandb.save_dir": path("<run dir>"),
    "logger.wandb.offline": flag(),
    "logger.wandb.log_model": flag(False),
    # conf/picture
    "picture.tile_px": integer(1, example=80),
    "picture.separator_px": integer(0, example=2),
    "picture.colormap": COLORMAP,
    "picture.title_px": integer(1, example=24),
    # conf/preprocess
    "preprocess.size": integer(1, example=28),
    "preprocess.digit_box": integer(1, example=20),
    "preprocess.max_pixels": integer(1, example=50_000_000),
    "preprocess.min_contrast": number(0, 1, low_open=True, high_open=True, example=0.1),
    "preprocess.ink_threshold": number(0, 1, high_open=True, example=0.15),
}
