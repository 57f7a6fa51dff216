"""The committed summary of a search, read from a real Optuna study (made here with optuna's own API)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from conftest import PROJECT_ROOT
from convlens.errors import ConvlensError
from convlens.sweeps.study_summary import summarise_search


def make_pruned_search(sweep, lengths: list[int], full: int) -> optuna.Study:
    """Trials that trained ``lengths`` steps each: those of ``full`` steps completed, the others were pruned."""
    sweep.mkdir(parents=True)
    study = optuna.create_study(study_name="mnist_best", storage=f"sqlite:///{sweep}/optuna.db", direction="maximize")
    for number, length in enumerate(lengths):
        trial = study.ask()
        trial.suggest_float("model.optimizer.lr", 1e-3, 0.3, log=True)
        for step in range(100, length + 1, 100):
            trial.report(0.9 + step / 1e5 + number / 1e4, step)
        study.tell(
            trial,
            0.9 + length / 1e5 + number / 1e4 if length == full else None,
            state=TrialState.COMPLETE if length == full else TrialState.PRUNED,
        )
    return study


def test_the_summary_counts_states_and_steps_and_names_the_best(tmp_path):
    lengths = [1000, 200, 200, 600, 1000, 200, 400]
    make_pruned_search(tmp_path / "sweep", lengths, full=1000)
    summary = summarise_search(tmp_path / "sweep", cpu_seconds=5400)
    assert summary["trials"] == {"complete": 2, "pruned": 5}
    assert summary["steps_per_trial"]["total"] == sum(lengths)
    assert summary["steps_per_trial"]["reached_max"] == 2
    assert summary["steps_per_trial"]["min"] == 200
    assert summary["best"]["trial"] == 4 and summary["best"]["steps"] == 1000
    assert set(summary["best"]["params"]) == {"model.optimizer.lr"}
    assert summary["hours"]["cpu"] == 1.5 and summary["started"] <= summary["ended"]


def test_a_folder_without_a_search_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConvlensError, match="holds no search"):
        summarise_search(tmp_path)


@pytest.mark.slow
def test_the_script_writes_json_that_reads_back(tmp_path):
    make_pruned_search(tmp_path / "sweep", [300, 100, 300], full=300)
    out = tmp_path / "summary.json"
    subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "scripts" / "study_summary.py"),
            str(tmp_path / "sweep"),
            "--out",
            str(out),
            "--cpu-seconds",
            "90",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")},
    )
    summary = json.loads(out.read_text())
    assert summary["trials"] == {"complete": 2, "pruned": 1} and summary["hours"]["cpu"] == 0.03
