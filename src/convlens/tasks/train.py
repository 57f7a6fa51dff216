"""What ``src/train.py`` and ``src/eval.py`` do, as functions a test or a sweep can call with a composed config."""

from __future__ import annotations

import json
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning import Callback, LightningDataModule, Trainer, seed_everything
from pytorch_lightning.callbacks import Timer
from pytorch_lightning.loggers import Logger, TensorBoardLogger
from rich.markup import escape

from convlens.data.interval_check import ValCheckIntervalFitsTheEpoch
from convlens.faults.spawned_processes import EndProcessGroup
from convlens.lightning_internals import check_lightning_internals
from convlens.models.from_checkpoint import checkpoint_to_resume, load_classifier, resolve_checkpoint
from convlens.progress.progress_log import ProgressLog
from convlens.startup.config_checks import check_eval_config, check_train_config
from convlens.startup.run_log import log_config, print_and_log
from convlens.startup.threads import set_threads
from convlens.sweeps.hparams_summary import log_hparams_with_metrics
from convlens.sweeps.multirun import check_strategy_for_multirun
from convlens.sweeps.trial_pruning import run_outcome, search_callbacks
from convlens.trackers.records import log_run_end, summary_lines


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Each ``_target_`` entry of a config group such as ``callbacks`` or ``logger``."""
    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if isinstance(entry, DictConfig) and "_target_" in entry]


def training_runs(cfg: DictConfig) -> Path:
    """Where conf/hydra/default.yaml puts training runs: ``ckpt_path=last`` looks there."""
    return Path(cfg.paths.log_dir) / "train" / "runs"


def prepare_process(cfg: DictConfig) -> None:
    """Thread count and seed, set the same way by every task (train, eval, predict, visualize, the app) and again
    per job, so parallel jobs neither oversubscribe nor share randomness."""
    set_threads(cfg.get("threads"))
    set_float32_precision(cfg.get("float32_matmul_precision", "highest"))
    quiet_inapplicable_warnings(cfg)
    if cfg.get("seed") is not None:
        seed_everything(cfg.seed, workers=True)


def set_float32_precision(precision: str) -> None:
    """Matrix products and cuDNN's convolutions alike: torch's setting covers only the products, and cuDNN runs
    float32 convolutions in TF32 unless told otherwise, so "highest" (exact float32) would not hold for them."""
    torch.set_float32_matmul_precision(precision)
    # The legacy switch, as set_float32_matmul_precision itself sets matmul's: mixing it with the newer
    # fp32_precision API makes torch refuse to read either.
    torch.backends.cudnn.allow_tf32 = precision != "highest"


def quiet_inapplicable_warnings(cfg: DictConfig) -> None:
    """Lightning's warnings that do not apply here, so that a run prints what matters."""
    if cfg.get("data", {}).get("in_memory"):  # batches are gathered from memory: workers would only add copies
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # Lightning's own use of a torch API it has not caught up with; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


def build_trainer(cfg: DictConfig, callbacks: list[Callback], loggers: list[Logger]) -> Trainer:
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    check_lightning_internals(trainer)
    return trainer


def write_metrics(output_dir: str | Path, metrics: dict[str, Any]) -> Path:
    path = Path(output_dir) / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path


def scalar(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else round(float(value), 6)  # float32 noise would only distract


def fit_progress(trainer: Trainer) -> tuple[int | None, int | None]:
    """(epochs, steps); unknown (None) after ``ddp_spawn``, whose child processes do not send the loop counters
    back to this one (its TensorBoard logs have them)."""
    if trainer.global_step == 0 and trainer.world_size > 1:
        return None, None
    return trainer.current_epoch, trainer.global_step


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test the best checkpoint, write ``metrics.json``; return the metrics."""
    log_config(cfg)
    check_train_config(cfg)
    started = time.perf_counter()
    prepare_process(cfg)
    datamodule: LightningDataModule = instantiate(cfg.data)
    model = instantiate(cfg.model, augment=cfg.get("augment"))  # conf/augment: applied in the training step
    resume_from = None
    if cfg.get("ckpt_path") is not None:
        resume_from = checkpoint_to_resume(cfg.ckpt_path, training_runs(cfg), model)
        print_and_log(f"resuming from {escape(str(resume_from))}")
    # The training loop alone (epochs with their validation checks, not setup or the sanity check), as the
    # tutorial's loop times itself; it keeps counting across a resume, since it travels in the checkpoint.
    loop_timer = Timer()
    callbacks = [
        *instantiate_group(cfg.get("callbacks")),
        loop_timer,
        ProgressLog(),
        ValCheckIntervalFitsTheEpoch(),
        *search_callbacks(cfg),
    ]  # a search job reports to its Optuna trial and stops when pruned
    if str(cfg.trainer.get("strategy")) == "ddp_spawn":
        callbacks.append(EndProcessGroup())
    trainer = build_trainer(cfg, callbacks, instantiate_group(cfg.get("logger")))
    check_strategy_for_multirun(trainer)

    fit_started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    fit_seconds = time.perf_counter() - fit_started
    # Read before testing, which reloads the best checkpoint's timer; unknown after ddp_spawn (see fit_progress).
    loop_seconds = None if loop_timer.start_time("train") is None else loop_timer.time_elapsed("train")
    # The last epoch's mean training loss and accuracy, beside the best validation accuracy.
    metrics: dict[str, Any] = {
        key: scalar(trainer.callback_metrics, key) for key in ("val/acc_best", "train/loss_epoch", "train/acc")
    }
    if metrics["val/acc_best"] is None and model.val_acc_best.update_called:  # resumed after the last validation
        metrics["val/acc_best"] = round(float(model.val_acc_best.compute()), 6)
    for key, value in model.last_epoch_training.items():  # resumed after the last epoch ended
        if metrics[key] is None:
            metrics[key] = round(value, 6)

    if cfg.get("test"):
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint is not None else ""
        if not best:
            print_and_log("[yellow]no best checkpoint was saved; testing the weights as they are")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True, verbose=False)
        metrics.update({key: scalar(trainer.callback_metrics, key) for key in ("test/acc", "test/err")})
        metrics["best_ckpt"] = best or None

    epochs, steps = fit_progress(trainer)
    metrics.update(run_outcome(trainer))  # status, pruned_at_step (and a search job's trial_number)
    metrics.update(
        {
            "run_name": cfg.get("run_name"),
            "epochs": epochs,
            "steps": steps,
            "fit_seconds": round(fit_seconds, 3),
            "train_loop_seconds": None if loop_seconds is None else round(loop_seconds, 3),
            "seconds_per_epoch": (
                None if epochs is None or loop_seconds is None else round(loop_seconds / max(epochs, 1), 3)
            ),
            "wall_seconds": round(time.perf_counter() - started, 3),
            "torch_threads": torch.get_num_threads(),
        }
    )
    log_hparams_with_metrics(trainer, cfg, model, metrics)
    output_dir = Path(cfg.paths.output_dir)
    if trainer.is_global_zero:  # under trainer=ddp every process runs this function; one writes the results
        write_metrics(output_dir, metrics)
        print_summary(metrics, output_dir, any(isinstance(logger, TensorBoardLogger) for logger in trainer.loggers))
        for line in summary_lines(trainer, output_dir):
            print_and_log(escape(line), soft_wrap=True, highlight=False)
        log_run_end(trainer, cfg, model, metrics)  # MLflow and W&B: settings, final metrics, the best checkpoint
    return metrics


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test a checkpoint on the test half; write ``metrics.json``; return the metrics."""
    started = time.perf_counter()
    log_config(cfg)
    check_eval_config(cfg)
    ckpt_path = resolve_checkpoint(cfg.ckpt_path, training_runs(cfg))
    model = load_classifier(ckpt_path)
    prepare_process(cfg)
    datamodule: LightningDataModule = instantiate(cfg.data)
    trainer = build_trainer(cfg, callbacks=[], loggers=[])
    trainer.test(model, datamodule=datamodule, verbose=False)
    metrics: dict[str, Any] = {key: scalar(trainer.callback_metrics, key) for key in ("test/acc", "test/err")}
    metrics.update({"ckpt_path": str(ckpt_path), "wall_seconds": round(time.perf_counter() - started, 3)})
    output_dir = Path(cfg.paths.output_dir)
    write_metrics(output_dir, metrics)
    print_and_log(
        f"test/acc [bold]{metrics['test/acc']:.4f}[/bold] (error {metrics['test/err']:.2f}%) "
        f"for {escape(str(ckpt_path))}; metrics in {escape(str(output_dir / 'metrics.json'))}"
    )
    return metrics


def tensorboard_command(log_dir: Path) -> str:
    """A shell line that opens TensorBoard on ``log_dir`` whether or not this environment is activated."""
    installed = Path(sys.executable).parent / "tensorboard"
    program = [str(installed)] if installed.is_file() else [sys.executable, "-m", "tensorboard.main"]
    return shlex.join([*program, "--logdir", str(log_dir)])


def print_summary(metrics: dict[str, Any], output_dir: Path, tensorboard: bool) -> None:
    parts = []
    if metrics.get("test/acc") is not None:
        parts.append(f"test/acc [bold]{metrics['test/acc']:.4f}[/bold] (error {metrics['test/err']:.2f}%)")
    if metrics.get("val/acc_best") is not None:
        parts.append(f"val/acc_best {metrics['val/acc_best']:.4f}")
    if metrics["steps"] is not None:
        parts.append(f"{metrics['epochs']} epochs, {metrics['steps']} steps")
    parts.append(f"{metrics['wall_seconds']:.0f} s")
    print_and_log(" · ".join(parts) + f" → {escape(str(output_dir))}")
    if tensorboard:
        print_and_log(f"TensorBoard: {escape(tensorboard_command(output_dir))}", soft_wrap=True, highlight=False)
