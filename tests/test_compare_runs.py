"""compare_runs.py: any run folders, grouped by their settings (mean ± std over seeds), named runs by name."""

import json
import os
import subprocess
import sys

import pytest

from conftest import run_entry
from convlens.startup.run_task import PROJECT_ROOT
from convlens.sweeps.compare import build_comparison
from convlens.sweeps.report import COMPLETE

TINY = [
    "trainer=cpu",
    "callbacks.rich_progress_bar=null",
    "callbacks.convnet_pictures=null",
    "threads=1",
    "trainer.enable_model_summary=false",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.val_check_interval=4",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
]


@pytest.fixture(scope="module")
def logs(tmp_path_factory, data_dir):
    """Two runs of one setting with seeds 1 and 2 (a multirun's jobs), one named run with another learning rate,
    and a folder that is not a run."""
    logs = tmp_path_factory.mktemp("logs")
    where = [f"paths.log_dir={logs}", f"paths.data_dir={data_dir}"]
    run_entry("train.py", "-m", *TINY, *where, "seed=1,2")
    run_entry("train.py", *TINY, *where, "run_name=bigger-lr", "model.optimizer.lr=0.05")
    (logs / "train" / "runs" / "notes").mkdir()
    return logs


@pytest.mark.slow
def test_the_name_goes_into_the_folder_tensorboard_and_metrics(logs):
    named = [path for path in (logs / "train" / "runs").iterdir() if path.name != "notes"]
    assert len(named) == 1 and named[0].name.endswith("_bigger-lr")
    assert json.loads((named[0] / "metrics.json").read_text())["run_name"] == "bigger-lr"
    assert list((named[0] / "tensorboard").glob("events.out.tfevents.*"))  # TensorBoard lists it by its folder


@pytest.mark.slow
def test_runs_are_grouped_by_settings_and_named(logs, tmp_path):
    (sweep,) = (logs / "train" / "multiruns").iterdir()
    report, skipped = build_comparison([f"{sweep}/*", str(logs / "train" / "runs" / "*")], tmp_path)
    assert report.swept == ["model.optimizer.lr"]  # the seed groups, the name and the paths are not settings
    by_jobs = {tuple(job.name for job in row.jobs): row for row in report.rows}
    assert set(by_jobs) == {("0", "1"), ("bigger-lr",)}
    seeds, named = by_jobs[("0", "1")], by_jobs[("bigger-lr",)]
    assert seeds.n_complete == 2 and all(job.state == COMPLETE for job in report.jobs)
    accuracies = [job.metrics["val/acc_best"] for job in seeds.jobs]
    mean, std = seeds.stats["val/acc_best"]
    assert mean == pytest.approx(sum(accuracies) / 2) and std is not None
    assert named.stats["val/acc_best"][1] is None and named.setting == {"model.optimizer.lr": "0.05"}
    assert skipped[logs / "train" / "runs" / "notes"] == "no .hydra/config.yaml, so not a run's folder"
    assert "a file" in skipped[sweep / "multirun.yaml"]


@pytest.mark.slow
def test_the_script_writes_the_report_and_names_what_it_skipped(logs, tmp_path):
    (sweep,) = (logs / "train" / "multiruns").iterdir()
    result = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "scripts" / "compare_runs.py"),
            str(logs / "train" / "runs" / "*"),
            str(sweep),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    skipped = [line for line in result.stdout.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 2 and "notes: no .hydra/config.yaml" in skipped[0] and "a multirun" in skipped[1]
    assert "bigger-lr" in result.stdout
    assert {path.name for path in tmp_path.iterdir()} == {"report.md", "report.csv", "report.png"}
    assert "# Runs compared: " in (tmp_path / "report.md").read_text()
