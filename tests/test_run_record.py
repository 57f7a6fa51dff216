"""What a run leaves behind and what it says: its log file, a last.ckpt at the final step, and messages that
name the right key, survive rich's markup and can be pasted into a shell."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import compose_config, run_entry
from convlens.errors import ConvlensError
from convlens.models.from_checkpoint import checked_checkpoint_path
from convlens.startup.run_log import print_error
from convlens.startup.run_task import PROJECT_ROOT, hydra_error_line, shell_override
from convlens.startup.threads import START_OMP_NUM_THREADS, START_THREADS
from convlens.sweeps.report import build_report, write_report
from convlens.sweeps.sweep_dir_claim import refuse_a_used_sweep_dir
from convlens.tasks.predict import image_paths
from convlens.tasks.train import train
from convlens.tasks.visualize import output_folder
from digit_folders import write_digit_folder
from test_config_errors import hydra_error

TINY = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=30",
    "trainer.val_check_interval=20",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "threads=1",
)  # validation at step 20 of 30


@pytest.mark.slow
def test_last_ckpt_holds_the_final_step_and_no_tensorboard_line_without_tensorboard(train_config, tmp_path, capsys):
    metrics = train(train_config(*TINY, "logger=csv"))
    assert metrics["steps"] == 30
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == metrics["steps"]
    assert "TensorBoard" not in capsys.readouterr().out


def test_the_test_after_an_in_process_run_with_threads_1_has_the_sessions_threads():
    """Runs after the test above (file order), which trained in this process with threads=1."""
    assert os.environ.get("OMP_NUM_THREADS") == START_OMP_NUM_THREADS
    assert torch.get_num_threads() == START_THREADS


@pytest.mark.slow
def test_the_run_log_holds_what_the_run_printed_and_the_tensorboard_line_pastes(data_dir, tmp_path):
    run_dir = tmp_path / "a run folder"  # a space: the printed command must still work
    result = run_entry(
        "train.py",
        *TINY,
        "trainer=cpu",
        "callbacks.rich_progress_bar=null",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
    )
    log = (run_dir / "train.log").read_text()
    assert "configuration:" in log and "max_epochs: 1" in log
    assert "GPU available:" in log  # Lightning's own messages
    assert "epoch 0, step 20: " in log and "val/acc " in log  # a line at the validation
    summary = next(line for line in result.stdout.splitlines() if "test/acc" in line)
    assert summary.split("→")[0].strip() in log
    (board,) = [line for line in result.stdout.splitlines() if line.startswith("TensorBoard: ")]
    assert board in log
    program, *arguments = shlex.split(board.removeprefix("TensorBoard: "))
    assert arguments == ["--logdir", str(run_dir)]
    assert Path(program).is_file() or program == sys.executable  # runs without an activated environment


# Every line a default tiny run prints, by what it says: Lightning's account of the machine and of the fit, the
# model summary, and the run's own result lines. Anything else is a notice that does not apply to it.
RUN_OWN_LINES = [
    r"Seed set to 12345",
    r"GPU available: False, used: False",
    r"TPU available: False, using: 0 TPU cores",
    r"`Trainer.fit` stopped: `max_epochs=1` reached\.",
    r"(Restoring states from the checkpoint path|Loaded model weights from the checkpoint) at \S+/best-\S+\.ckpt",
    r"[┏┃┡│└].*",
    r"(Trainable|Non-trainable|Total) params: \d.*",
    r"Total estimated model params size.*",
    r"Modules in (train|eval) mode: \d+",
    r"Total FLOPs: [1-9].*",  # "Total FLOPs: 0" was a wrong count
    r"test/acc 0\.\d+ \(error .*\) · val/acc_best .* → \S+",
    r"TensorBoard: .*",
]


@pytest.mark.slow
def test_a_default_tiny_run_prints_only_lines_that_apply_to_it(data_dir, tmp_path):
    result = run_entry(
        "train.py",
        "debug=limit",
        "trainer.log_every_n_steps=10",
        "callbacks.rich_progress_bar=null",
        "+trainer.enable_progress_bar=false",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={tmp_path / 'run'}",
        env={"COLUMNS": "200"},
    )
    printed = [line.rstrip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    others = [line for line in printed if not any(re.fullmatch(own, line) for own in RUN_OWN_LINES)]
    assert not others, "lines that are not the run's own:\n" + "\n".join(others)
    assert any(line.startswith("Total FLOPs: ") for line in printed)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local", "submitit_slurm"])
def test_choosing_a_launcher_prints_no_schema_matching_warning(launcher):
    result = run_entry("train.py", f"hydra/launcher={launcher}", "--cfg", "hydra", "--package", "hydra.launcher")
    assert result.stderr == "" and result.stdout.startswith("# @package hydra.launcher")


@pytest.mark.slow
def test_a_failed_run_logs_the_line_and_the_traceback_and_folder_data_checks_the_interval(data_dir, tmp_path):
    folder = write_digit_folder(data_dir, tmp_path / "digits", per_class=40)  # 96 training images: 2 batches
    run_dir = tmp_path / "run"
    result = run_entry(
        "train.py",
        "trainer=cpu",
        "data=imagefolder",
        f"data.root={folder}",
        "trainer.val_check_interval=100",
        f"hydra.run.dir={run_dir}",
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]  # after Lightning's own messages
    assert line.startswith("error: trainer.val_check_interval=100 batches, but an epoch has 2 training batches")
    log = (run_dir / "train.log").read_text()
    assert line in log and "Traceback (most recent call last)" in log


def test_rich_markup_does_not_eat_bracketed_text(capsys):
    with pytest.raises(ConvlensError) as error:
        image_paths(None)
    print_error(str(error.value))
    assert capsys.readouterr().err.strip() == (
        "error: no images given; pass images=<file>, images=[a.png,b.png] or images=<folder>"
    )


def test_a_folder_of_images_takes_every_type_pillow_reads_and_says_what_it_skipped(data_dir, tmp_path):
    folder = write_digit_folder(data_dir, tmp_path / "digits", per_class=1) / "one"
    (png,) = folder.glob("*.png")
    from PIL import Image

    Image.open(png).save(folder / "digit.gif")
    (folder / "notes.txt").write_text("not a picture")
    (folder / "more").mkdir()
    found, skipped = image_paths(folder)
    assert found == sorted([png, folder / "digit.gif"])
    assert skipped == {
        folder / "more": "a folder (images= does not look inside subfolders)",
        folder / "notes.txt": "not an image type Pillow reads (.txt)",
    }


def test_a_checkpoint_folder_is_called_a_folder(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(
        ConvlensError,
        match=rf"^ckpt_path={tmp_path} is a folder, not a checkpoint file; "
        rf"e.g. ckpt_path={tmp_path}/checkpoints/last.ckpt$",
    ):
        checked_checkpoint_path(tmp_path)


def test_a_value_hydra_cannot_read_unquoted_gets_the_quoting_hydra_needs():
    line = hydra_error_line(hydra_error("paths.data_dir=/data/zählen"))
    assert line.endswith("needs Hydra's quotes inside the shell's: 'paths.data_dir=\"/data/zählen\"'")
    assert shell_override("ckpt_path", "/runs/a b/last.ckpt") == "'ckpt_path=\"/runs/a b/last.ckpt\"'"
    assert shell_override("ckpt_path", "/runs/a/last.ckpt") == "ckpt_path=/runs/a/last.ckpt"


def test_a_relative_out_dir_lies_in_the_run_folder(tmp_path):
    assert output_folder(compose_config("visualize", ["out_dir=pictures"], tmp_path)) == tmp_path / "pictures"
    assert output_folder(compose_config("visualize", [f"out_dir={tmp_path / 'x'}"], tmp_path)) == tmp_path / "x"


def test_a_sweep_dir_with_jobs_is_refused_to_a_grid_and_to_another_study_but_not_to_its_own_search(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    refuse_a_used_sweep_dir(tmp_path, None)  # empty: fine
    (tmp_path / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "0" / ".hydra" / "overrides.yaml").write_text("[]\n")
    (tmp_path / ".sweep.kind").write_text(f"search {storage} mine\n")
    with pytest.raises(ConvlensError, match=r"already holds the jobs of an earlier sweep \(0\)") as error:
        refuse_a_used_sweep_dir(tmp_path, None)
    assert str(error.value).endswith("to continue a search, run the same command with the same hydra.sweep.dir")
    refuse_a_used_sweep_dir(tmp_path, f"search {storage} mine")  # the same study continues
    with pytest.raises(ConvlensError, match=rf"another sweep or study \(0\).*hydra.sweeper.storage={storage}"):
        refuse_a_used_sweep_dir(tmp_path, f"search {storage} other")


@pytest.mark.slow
def test_a_multirun_into_a_used_sweep_dir_is_one_line_and_touches_nothing(tmp_path):
    job = tmp_path / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    (job / "metrics.json").write_text('{"val/acc_best": 0.9}\n')
    result = run_entry("train.py", "-m", "seed=1,2", f"hydra.sweep.dir={tmp_path}", check=False)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: hydra.sweep.dir={tmp_path} already holds the jobs of an earlier sweep (0)")
    assert json.loads((job / "metrics.json").read_text()) == {"val/acc_best": 0.9}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["0"]


@pytest.mark.slow
def test_ctrl_c_while_starting_is_one_line():
    process = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "src" / "train.py"), "debug=fdr"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")},
    )
    time.sleep(0.5)  # inside the imports (torch alone takes longer), before any training
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() in ([], ["interrupted (Ctrl-C); nothing was run or saved after this point"])
    assert process.returncode in (-signal.SIGINT, 128 + signal.SIGINT)


def fake_sweep(sweep: Path) -> Path:
    """Two finished jobs as Hydra and train.py leave them: overrides and metrics.json."""
    for job, lr in enumerate((0.01, 0.05)):
        (sweep / str(job) / ".hydra").mkdir(parents=True)
        (sweep / str(job) / ".hydra" / "overrides.yaml").write_text(f"- model.optimizer.lr={lr}\n")
        (sweep / str(job) / "metrics.json").write_text(json.dumps({"val/acc_best": 0.9 + lr, "wall_seconds": 3}))
    return sweep


def test_sweep_report_refuses_an_unknown_metric_and_leaves_the_old_report(tmp_path):
    sweep = fake_sweep(tmp_path / "sweep")
    write_report(build_report(sweep))
    before = {path.name: path.read_bytes() for path in sweep.glob("report.*")}
    assert set(before) == {"report.md", "report.csv", "report.png"}
    with pytest.raises(
        ConvlensError,
        match=r"^--metric nope/x is in no job's metrics.json; the metrics there are "
        r"val/acc_best, wall_seconds$",
    ):
        build_report(sweep, "nope/x")
    assert {path.name: path.read_bytes() for path in sweep.glob("report.*")} == before
    assert sorted(path.name for path in sweep.iterdir() if path.name.startswith(".")) == []  # no temporary left


def test_sweep_report_refuses_a_single_runs_folder(tmp_path):
    run = fake_sweep(tmp_path / "sweep") / "0"
    with pytest.raises(ConvlensError, match="is a single run's folder, not a multirun"):
        build_report(run)
