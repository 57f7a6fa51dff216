"""Sweeps as a user runs them: real multiruns in subprocesses on real MNIST, with tiny limits, and their reports."""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import joblib
import optuna
import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from conftest import compose_config, run_entry
from convlens.errors import ConvlensError
from convlens.startup.run_task import PROJECT_ROOT
from convlens.sweeps.multirun import check_strategy_for_multirun
from convlens.sweeps.report import build_report
from convlens.tasks.train import build_trainer

SRC = {"PYTHONPATH": str(PROJECT_ROOT / "src")}  # launcher workers import this checkout's convlens too


@pytest.fixture
def tiny(data_dir: Path) -> tuple[str, ...]:
    """A real but tiny job: 5 training batches, one validation and one test batch, one thread."""
    return (
        "trainer=cpu",
        f"paths.data_dir={data_dir}",
        "threads=1",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=5",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.val_check_interval=5",
        "callbacks.rich_progress_bar=null",
        "trainer.enable_model_summary=false",
    )


def metrics_of(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def csv_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "report.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_grid_multirun_gives_each_job_its_own_dir_and_ends_with_a_report(tiny, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_entry(
        "train.py",
        "-m",
        *tiny,
        "model.optimizer.lr=0.01,0.05",
        "model.net.dropout=0.5",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=SRC,
    )

    jobs = sorted(path for path in sweep.iterdir() if (path / ".hydra").is_dir())
    assert [job.name for job in jobs] == ["0", "1"]
    assert [metrics_of(job)["steps"] for job in jobs] == [5, 5]
    assert all((job / "tensorboard").is_dir() for job in jobs)
    assert not list(tmp_path.rglob("lightning_logs")), "the logger must write into each job's own dir"

    rows = csv_rows(sweep)
    assert [row["model.optimizer.lr"] for row in rows] == ["0.01", "0.05"]
    assert [float(row["val/acc_best_mean"]) for row in rows] == [metrics_of(job)["val/acc_best"] for job in jobs]
    assert sum(row["best"] == "1" for row in rows) == 1
    settings, _, every_job = (sweep / "report.md").read_text().partition("## Every job")
    assert settings.count("| 0.01 |") == 1 and settings.count("| 0.05 |") == 1
    assert "| 0 | 0.01 | complete |" in every_job and "| 1 | 0.05 | complete |" in every_job
    assert (sweep / "report.png").stat().st_size > 0
    assert "val/acc_best" in result.stdout and "★" in result.stdout


@pytest.mark.slow
def test_each_job_logs_its_hyperparameters_and_final_metrics_to_tensorboard_hparams(tiny, tmp_path):
    sweep = tmp_path / "sweep"
    run_entry("train.py", "-m", *tiny, "model.optimizer.lr=0.02", f"hydra.sweep.dir={sweep}", env=SRC)

    events = EventAccumulator(str(sweep / "0" / "tensorboard"))
    events.Reload()
    start = plugin_data_pb2.HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    ).session_start_info
    assert start.hparams["optimizer/lr"].number_value == pytest.approx(0.02)
    assert start.hparams["batch_size"].number_value == 64
    assert "model.optimizer.lr=0.02" in start.hparams["overrides"].string_value
    logged = {tag: events.Scalars(tag)[-1].value for tag in ("hparams/val_acc_best", "hparams/test_acc")}
    saved = metrics_of(sweep / "0")
    assert logged == pytest.approx(
        {"hparams/val_acc_best": saved["val/acc_best"], "hparams/test_acc": saved["test/acc"]}
    )


@pytest.mark.slow
def test_jobs_differing_only_by_seed_are_one_row_with_mean_and_std(tiny, tmp_path):
    sweep = tmp_path / "sweep"
    run_entry("train.py", "-m", *tiny, "model.optimizer.lr=0.01,0.05", "seed=1,2", f"hydra.sweep.dir={sweep}", env=SRC)

    report = build_report(sweep)
    assert report.n_jobs == 4 and report.swept == ["model.optimizer.lr"]
    for row in report.rows:
        assert len(row.jobs) == 2 and {job.value("seed") for job in row.jobs} == {"1", "2"}
        values = [metrics_of(job.path)["test/acc"] for job in row.jobs]
        assert row.stats["test/acc"] == pytest.approx((statistics.fmean(values), statistics.stdev(values)))
    assert [row["n"] for row in csv_rows(sweep)] == ["2", "2"]
    assert (sweep / "report.md").read_text().count(" ± ") >= 4  # val, test and wall time of both rows


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the failing job asks for a GPU this machine lacks")
def test_a_failing_job_is_reported_with_its_overrides_and_the_sweep_goes_on(tiny, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_entry(
        "train.py", "-m", *tiny, "trainer.accelerator=gpu,cpu", f"hydra.sweep.dir={sweep}", check=False, env=SRC
    )

    assert result.returncode == 1
    assert "job 0 (" in result.stderr and "trainer.accelerator=gpu" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (sweep / "0" / "metrics.json").exists() and "GPU" in (sweep / "0" / "error.txt").read_text()
    assert metrics_of(sweep / "1")["steps"] == 5, "the job after the failed one still ran"
    markdown = (sweep / "report.md").read_text()
    assert "## Failed or missing jobs" in markdown and "trainer.accelerator=gpu" in markdown
    assert "1 of 2 jobs failed" in result.stderr


@pytest.mark.slow
def test_a_grid_report_lists_a_failed_job_with_its_reason_beside_the_completed_one(tiny, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_entry(
        "train.py", "-m", *tiny, "model.optimizer.lr=-1,0.01", f"hydra.sweep.dir={sweep}", check=False, env=SRC
    )

    assert result.returncode == 1
    reason = (sweep / "0" / "error.txt").read_text().strip()
    assert "model.optimizer.lr" in reason
    markdown = (sweep / "report.md").read_text()
    assert "2 jobs: 1 complete, 1 failed." in markdown
    assert f"| 0 | -1 | failed: {reason} | — |" in markdown
    assert f"| 1 | 0.01 | complete | {100 * metrics_of(sweep / '1')['val/acc_best']:.2f} |" in markdown
    assert "1 complete, 1 failed" in result.stdout


@pytest.mark.slow
def test_ctrl_c_in_a_grid_reports_what_finished_and_says_how_to_run_the_rest(tiny, tmp_path):
    """Ctrl-C pressed by a job itself (tests/ctrl_c_in_job.py) as job 1 of 4 trains; then the printed line is run."""
    sweep, logs = tmp_path / "sweep", tmp_path / "logs"
    ten_batches = [item for item in tiny if not item.startswith("trainer.limit_train_batches")]
    grid = (
        *ten_batches,
        "trainer.limit_train_batches=10",
        "+callbacks.ctrl_c._target_=ctrl_c_in_job.CtrlCInJob",
        f"paths.log_dir={logs}",
        "model.optimizer.lr=0.01,0.05",
        "seed=1,2",
    )
    tests_too = {"PYTHONPATH": f"{SRC['PYTHONPATH']}{os.pathsep}{PROJECT_ROOT / 'tests'}"}
    result = run_entry(
        "train.py",
        "-m",
        *grid,
        f"hydra.sweep.dir={sweep}",
        check=False,
        env={**tests_too, "CONVLENS_TEST_CTRL_C_JOB": "1"},
    )

    assert result.returncode == 128 + 2 and "Traceback" not in result.stderr
    assert metrics_of(sweep / "0")["steps"] == 10, "the finished job is kept"
    assert (sweep / "1" / "checkpoints" / "last.ckpt").is_file() and not (sweep / "1" / "metrics.json").exists()
    assert not (sweep / "2").exists() and not (sweep / "3").exists()
    markdown = (sweep / "report.md").read_text()
    assert "4 jobs: 1 complete, 1 interrupted, 2 never started." in markdown
    last = sweep / "1" / "checkpoints" / "last.ckpt"
    assert f"| 1 | 0.01 | 2 | interrupted; its {last} resumes it | — |" in markdown
    assert "| 2 | 0.05 | 1 | never started | — |" in markdown and "| 3 | 0.05 | 2 | never started | — |" in markdown
    line = next(line for line in result.stderr.splitlines() if line.startswith("interrupted: "))
    assert line.startswith("interrupted: 1 complete, 1 interrupted, 2 never started; run the rest with: python ")

    rest = line.partition("run the rest with: ")[2].replace("python ", f"{sys.executable} ")
    subprocess.run(rest, shell=True, cwd=PROJECT_ROOT, check=True, capture_output=True, env={**os.environ, **tests_too})
    ran = sorted(
        (job.value("model.optimizer.lr"), job.value("seed"))
        for new_sweep in (logs / "train" / "multiruns").iterdir()
        for job in build_report(new_sweep).jobs
        if job.metrics is not None
    )
    assert ran == [("0.01", "2"), ("0.05", "1"), ("0.05", "2")], "the rest is exactly the jobs that did not finish"


@pytest.mark.slow
def test_optuna_search_persists_its_study_and_writes_the_best_parameters(tiny, tmp_path):
    sweep = tmp_path / "not" / "yet" / "there"  # the sqlite file's folder must be made before the study opens
    run_entry(
        "train.py",
        "hparams_search=mnist_optuna",
        *tiny,
        "hydra.sweeper.n_trials=3",
        f"hydra.sweep.dir={sweep}",
        env=SRC,
    )

    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert set(best.best_params) == {
        "model.optimizer.lr",
        "model.optimizer.momentum",
        "model.net.dropout",
        "data.batch_size",
        "model/scheduler",
    }
    study = optuna.load_study(study_name="mnist_optuna", storage=f"sqlite:///{sweep}/optuna.db")
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert best.best_value == pytest.approx(max(metrics_of(sweep / str(i))["val/acc_best"] for i in range(3)))
    assert len(csv_rows(sweep)) == 3


@pytest.mark.slow
def test_joblib_runs_two_jobs_at_once_without_oversubscribing(tiny, tmp_path):
    sweep = tmp_path / "sweep"
    no_threads = tuple(item for item in tiny if not item.startswith("threads="))
    run_entry(
        "train.py",
        "-m",
        "hydra/launcher=joblib",
        *no_threads,
        "model.optimizer.lr=0.01,0.05",
        f"hydra.sweep.dir={sweep}",
        env=SRC,
    )

    per_worker = max(1, joblib.cpu_count() // 2)  # loky gives each of the 2 workers its share of the cores
    assert [metrics_of(sweep / name)["torch_threads"] for name in ("0", "1")] == [per_worker, per_worker]
    assert len(csv_rows(sweep)) == 2


@pytest.mark.slow
def test_submitit_local_runs_a_job_through_submitit(tiny, tmp_path):
    sweep = tmp_path / "sweep"
    run_entry(
        "train.py",
        "-m",
        "hydra/launcher=submitit_local",
        *tiny,
        "model.optimizer.lr=0.01",
        f"hydra.sweep.dir={sweep}",
        env=SRC,
    )

    assert metrics_of(sweep / "0")["steps"] == 5
    assert list((sweep / ".submitit").glob("*/*_log.out")), "submitit ran the job and kept its log"


def test_slurm_launcher_requests_what_the_trainer_will_use(tmp_path):
    cfg = compose_config(
        "train",
        [
            "hydra/launcher=submitit_slurm",
            "hydra.launcher.partition=gpu",
            "trainer=gpu",
            "trainer.devices=4",
            "+trainer.num_nodes=2",
        ],
        tmp_path,
    )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher") and launcher["partition"] == "gpu"
    assert (launcher["nodes"], launcher["gpus_per_node"], launcher["tasks_per_node"]) == (2, 4, 4)
    default_nodes = compose_config("train", ["hydra/launcher=submitit_slurm", "trainer=gpu"], tmp_path)
    assert default_nodes.hydra.launcher.nodes == 1 and default_nodes.hydra.launcher.gpus_per_node == 1


def test_ddp_is_refused_under_multirun_but_ddp_spawn_and_single_runs_pass(tmp_path):
    def trainer(*overrides: str):
        cfg = compose_config("train", ["trainer=cpu", "trainer.devices=2", *overrides], tmp_path)
        return build_trainer(cfg, callbacks=[], loggers=[])

    with pytest.raises(ConvlensError, match="ddp_spawn"):
        check_strategy_for_multirun(trainer("+trainer.strategy=ddp", "hydra.mode=MULTIRUN"))
    check_strategy_for_multirun(trainer("+trainer.strategy=ddp_spawn", "hydra.mode=MULTIRUN"))
    check_strategy_for_multirun(trainer("+trainer.strategy=ddp", "hydra.mode=RUN"))


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="needs 2+ threads to tell a leaked 1 from the default")
def test_threads_are_set_again_after_lightnings_ddp_launcher_changed_them():
    script = """
import json, os, torch
from lightning_fabric.utilities.distributed import _set_num_threads_if_needed
from convlens.startup.threads import START_THREADS, set_threads
_set_num_threads_if_needed(num_processes=64)  # what DDP's launcher does to the process that starts it
leaked = [torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")]
print(json.dumps({"start": START_THREADS, "leaked": leaked, "restored": set_threads(None),
                  "omp": os.environ.get("OMP_NUM_THREADS"), "explicit": set_threads(1)}))
"""
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"} | SRC
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    seen = json.loads(result.stdout)
    assert seen["leaked"] == [1, "1"] and seen["start"] > 1
    assert seen["restored"] == seen["start"] and seen["omp"] is None and seen["explicit"] == 1
