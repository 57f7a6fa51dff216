"""The sweep report read from real job folders and a real Optuna study (made here with optuna's own API)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from conftest import PROJECT_ROOT
from convlens.errors import ConvlensError
from convlens.sweeps.interrupted import as_grids
from convlens.sweeps.report import MIN_COMPLETE_FOR_IMPORTANCE, build_report, write_report

SRC = {"PYTHONPATH": str(PROJECT_ROOT / "src")}


def job_folder(sweep: Path, number: int, params: dict, metrics: dict | None = None, error: str | None = None) -> Path:
    """A job's folder as Hydra and src/train.py leave it."""
    folder = sweep / str(number)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {key}={value}\n" for key, value in params.items()))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    if error is not None:
        (folder / "error.txt").write_text(error + "\n")
    return folder


def make_search(
    sweep: Path, complete: int = 5, storage: str | optuna.storages.BaseStorage | None = None, name: str = "mnist_optuna"
) -> optuna.Study:
    """A search as the sweeper leaves it: ``complete`` completed trials, then one pruned at step 40 and one failed,
    each trial's folder named by its number."""
    sweep.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=name,
        storage=storage or f"sqlite:///{sweep}/optuna.db",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    for number in range(complete + 2):
        trial = study.ask()
        params = {
            "model.optimizer.lr": trial.suggest_float("model.optimizer.lr", 1e-3, 0.2, log=True),
            "model.net.dropout": trial.suggest_float("model.net.dropout", 0.2, 0.6),
        }
        accuracy = 0.9 + 0.4 * params["model.optimizer.lr"] - 0.01 * params["model.net.dropout"]
        if number == complete:
            trial.report(0.5, 40)
            job_folder(sweep, number, params, {"val/acc_best": 0.5, "status": "pruned", "pruned_at_step": 40})
            study.tell(trial, state=TrialState.PRUNED)
        elif number == complete + 1:
            job_folder(sweep, number, params, error="training diverged at step 3")
            study.tell(trial, state=TrialState.FAIL)
        else:
            job_folder(
                sweep,
                number,
                params,
                {
                    "val/acc_best": accuracy,
                    "test/err": 12.45 + number / 10,
                    "wall_seconds": 3.5,
                    "status": "complete",
                    "trial_number": number,
                },
            )
            study.tell(trial, accuracy)
    return study


def test_a_search_report_lists_every_trials_state_the_best_and_the_importances(tmp_path):
    sweep = tmp_path / "sweep"
    study = make_search(sweep)
    report = build_report(sweep)
    write_report(report)

    assert [job.describe() for job in report.jobs] == [
        *["complete"] * 5,
        "pruned at step 40",
        "failed: training diverged at step 3",
    ]
    assert report.best.jobs[0].name == str(study.best_trial.number)
    assert report.importances == pytest.approx(optuna.importance.get_param_importances(study))
    markdown = (sweep / "report.md").read_text()
    assert "7 jobs: 5 complete, 1 pruned, 1 failed" in markdown
    assert "| pruned at step 40 | 50.00 |" in markdown
    assert "| failed: training diverged at step 3 | — |" in markdown
    assert f"best trial of study mnist_optuna: {study.best_trial.number}, value {study.best_value:.6g}" in markdown
    assert "## Parameter importance" in markdown and "- model.optimizer.lr: " in markdown
    assert "pruned" in (sweep / "report.csv").read_text() and (sweep / "report.png").stat().st_size > 0


def test_too_few_completed_trials_give_no_importances_but_say_why(tmp_path):
    sweep = tmp_path / "sweep"
    make_search(sweep, complete=MIN_COMPLETE_FOR_IMPORTANCE - 1)
    report = build_report(sweep)
    assert report.importances is None
    needed = MIN_COMPLETE_FOR_IMPORTANCE
    assert report.importance_note == f"too few trials for parameter importances: {needed - 1} complete, {needed} needed"


def test_the_study_is_found_by_the_storage_url_and_name_the_sweep_used(tmp_path):
    """A journal study outside the sweep dir, named by the sweep's multirun.yaml with Hydra's interpolations."""
    sweep = tmp_path / "sweep"
    make_search(sweep, storage=JournalStorage(JournalFileBackend(str(tmp_path / "study.log"))), name="shared")
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweep:\n    dir: logs/${now:%Y}\n  sweeper:\n    _target_: somewhere.Sweeper\n"
        "    storage: journal:///${hydra.sweep.dir}/../study.log\n    study_name: shared\n    n_trials: 9\n"
    )

    report = build_report(sweep)
    assert report.study.study_name == "shared" and len(report.study.trials) == 7
    assert report.trials_not_started == 2 and report.counts().endswith("2 trials not yet started")


def test_reading_a_missing_study_is_refused_and_makes_no_file(tmp_path):
    sweep = tmp_path / "sweep"
    job_folder(sweep, 0, {"model.optimizer.lr": 0.1}, {"val/acc_best": 0.9})
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweep:\n    dir: x\n  sweeper:\n    storage: sqlite:///${hydra.sweep.dir}/gone.db\n"
    )
    with pytest.raises(ConvlensError, match=r"gone.db does not exist"):
        build_report(sweep)
    assert not (sweep / "gone.db").exists()


@pytest.mark.slow
def test_another_metric_keeps_its_digits_and_gets_a_report_of_its_own(tmp_path):
    sweep = tmp_path / "sweep"
    make_search(sweep)
    script = [sys.executable, str(PROJECT_ROOT / "scripts" / "sweep_report.py"), str(sweep)]
    subprocess.run(script, check=True, capture_output=True, env=SRC)
    own = (sweep / "report.md").read_text()

    result = subprocess.run(
        [*script, "--metric", "test/err", "--mode", "min"], check=True, capture_output=True, text=True, env=SRC
    )
    assert (sweep / "report.md").read_text() == own, "the sweep's own report is left as it was"
    other = (sweep / "report-test_err-min.md").read_text()
    assert "| 12.45 |" in other and "| 12.85 |" in other and "report-test_err-min.md" in result.stdout
    assert {path.name for path in sweep.glob("report-test_err-min.*")} == {
        "report-test_err-min.md",
        "report-test_err-min.csv",
        "report-test_err-min.png",
    }

    subprocess.run([*script, "--metric", "test/err", "--mode", "min", "--replace"], check=True, env=SRC)
    assert "best by min" not in own and "min of mean `test/err`" in (sweep / "report.md").read_text()


def test_the_jobs_left_by_an_interrupt_become_the_fewest_sweeps_that_hold_exactly_them():
    grid = [
        [f"lr={lr}", f"dropout={dropout}", f"seed={seed}"] for lr in (1, 2) for dropout in (3, 4) for seed in (5, 6)
    ]
    assert as_grids(grid) == [["lr=1,2", "dropout=3,4", "seed=5,6"]]
    assert as_grids(grid[3:]) == [["lr=1", "dropout=4", "seed=6"], ["lr=2", "dropout=3,4", "seed=5,6"]]
    assert as_grids(grid[1:3]) == [["lr=1", "dropout=3", "seed=6"], ["lr=1", "dropout=4", "seed=5"]]
    assert as_grids([[]]) == [[]]  # a sweep of one job with no overrides
