"""Real training processes, stopped by real signals, resumed from the checkpoints they left.

Six runs start together (two uninterrupted twins; one each stopped by SIGTERM, SIGINT, SIGKILL and two Ctrl-Cs),
then the three stopped by one signal resume together: about a minute on an idle 2-core machine. Each process
signals itself at a chosen step or during a chosen validation (tests/signal_from_inside.py), so where a signal
lands is part of the test, not a matter of timing.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from convlens.startup.run_task import PROJECT_ROOT
from signal_from_inside import signal_at

pytestmark = pytest.mark.slow

EPOCH = 100  # training batches per epoch
STEPS = 2 * EPOCH
RUN = [
    "trainer=cpu",
    "trainer.deterministic=true",
    "trainer.max_epochs=2",
    f"trainer.limit_train_batches={EPOCH}",
    "trainer.val_check_interval=40",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "callbacks.rich_progress_bar=null",
    "callbacks.step_checkpoint.every_n_train_steps=10",
    "trainer.enable_model_summary=false",
    "threads=1",
    "logger=csv",
    "trainer.log_every_n_steps=1",
    "+logger.csv.flush_logs_every_n_steps=1",
]  # validation at steps 40, 80, 140, 180
TIMING = {"fit_seconds", "train_loop_seconds", "seconds_per_epoch", "wall_seconds"}
# The last epoch's training loss and accuracy: after a resume in the middle of that epoch they average only the
# batches since the resume (a documented limit), so resumed runs are compared without them.
LAST_EPOCH_TRAINING = {"train/loss_epoch", "train/acc"}
LAST_VALIDATION = 180


def start(log_dir: Path, data_dir: Path, *extra: str) -> subprocess.Popen:
    command = [
        sys.executable,
        str(PROJECT_ROOT / "src" / "train.py"),
        *RUN,
        f"paths.data_dir={data_dir}",
        f"paths.log_dir={log_dir}",
        *extra,
    ]
    tests = Path(__file__).parent  # signal_from_inside, for the runs that signal themselves
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(PROJECT_ROOT / "src")])}
    return subprocess.Popen(
        command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def finish(process: subprocess.Popen) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=600)
    return process.returncode, stderr


def run_dir(log_dir: Path) -> Path:
    (only,) = (log_dir / "train" / "runs").iterdir()
    return only


def step_of(path: Path) -> int:
    return torch.load(path, weights_only=True)["global_step"]


def metrics(directory: Path, leave_out: frozenset[str] = frozenset()) -> dict:
    values = json.loads((directory / "metrics.json").read_text())
    values["best_ckpt"] = Path(values["best_ckpt"]).name
    return {key: value for key, value in values.items() if key not in TIMING | leave_out}


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def same_weights(a: Path, b: Path) -> bool:
    first, second = weights(a), weights(b)
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


# Where each stopped run signals itself: calls are 10 steps (gcd of the validation and checkpoint intervals).
SIGTERM_STEP = 30  # mid-epoch, after the call ending at step 30
KILL_STEP = 70  # kill -9 after the call ending at step 70, before that step's checkpoint: last.ckpt is at 60
STOPPED = {
    "sigterm": signal_at("SIGTERM", SIGTERM_STEP),
    "sigint": signal_at("SIGINT", LAST_VALIDATION, during_validation=True),  # in the middle of that validation
    "sigkill": signal_at("SIGKILL", KILL_STEP),
    "second_ctrl_c": signal_at("SIGINT", SIGTERM_STEP, times=2),  # Ctrl-C, then Ctrl-C again at once
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("interruptions")
    logs = {name: root / name for name in ("twin_a", "twin_b", *STOPPED)}
    with ThreadPoolExecutor(max_workers=6) as pool:
        started = {
            name: pool.submit(lambda n=name: finish(start(logs[n], data_dir, *STOPPED.get(n, [])))) for name in logs
        }
        stopped = {name: future.result() for name, future in started.items()}
    stopped["twins"] = [stopped.pop("twin_a"), stopped.pop("twin_b")]
    stopped_ckpts = {name: run_dir(logs[name]) / "checkpoints" / "last.ckpt" for name in STOPPED}
    stopped_steps = {name: step_of(path) for name, path in stopped_ckpts.items()}
    resumed_logs = {name: root / f"{name}_resumed" for name in ("sigterm", "sigint", "sigkill")}
    with ThreadPoolExecutor(max_workers=3) as pool:
        resumes = {
            # a path; "last" within the interrupted run's logs; the newest checkpoint after kill -9
            "sigterm": pool.submit(
                lambda: finish(start(resumed_logs["sigterm"], data_dir, f"ckpt_path={stopped_ckpts['sigterm']}"))
            ),
            "sigint": pool.submit(lambda: finish(start(logs["sigint"], data_dir, "ckpt_path=last"))),
            "sigkill": pool.submit(
                lambda: finish(start(resumed_logs["sigkill"], data_dir, f"ckpt_path={stopped_ckpts['sigkill']}"))
            ),
        }
        resumed = {name: future.result() for name, future in resumes.items()}
    sigint_dirs = sorted((logs["sigint"] / "train" / "runs").iterdir(), key=lambda path: path.stat().st_mtime)
    return {
        "logs": logs,
        "stopped": stopped,
        "stopped_steps": stopped_steps,
        "resumed": resumed,
        "resumed_dirs": {
            "sigterm": run_dir(resumed_logs["sigterm"]),
            "sigint": sigint_dirs[-1],
            "sigkill": run_dir(resumed_logs["sigkill"]),
        },
        "sigint_first_dir": sigint_dirs[0],
    }


def test_the_same_seed_twice_gives_identical_metrics_and_weights(runs):
    (rc_a, err_a), (rc_b, err_b) = runs["stopped"]["twins"]
    assert rc_a == rc_b == 0, err_a[-2000:] + err_b[-2000:]
    a, b = run_dir(runs["logs"]["twin_a"]), run_dir(runs["logs"]["twin_b"])
    assert metrics(a) == metrics(b) and metrics(a)["steps"] == STEPS
    assert same_weights(a / "checkpoints" / "last.ckpt", b / "checkpoints" / "last.ckpt")


def test_runs_started_in_the_same_second_get_their_own_folders(runs):
    folders = [run_dir(runs["logs"][name]).name for name in ("twin_a", "twin_b", "sigterm", "sigkill", "second_ctrl_c")]
    folders.append(runs["sigint_first_dir"].name)
    if len({folder.rsplit("_", 1)[0] for folder in folders}) == len(folders):
        pytest.skip("no two of the runs started in the same second this time: nothing for the pid to tell apart")
    assert len(set(folders)) == len(folders)


def test_sigterm_mid_epoch_saves_and_a_resume_ends_exactly_like_the_uninterrupted_run(runs):
    returncode, stderr = runs["stopped"]["sigterm"]
    step = runs["stopped_steps"]["sigterm"]
    assert returncode == 128 + signal.SIGTERM and "Traceback" not in stderr
    assert step == SIGTERM_STEP  # the call under way ended, and nothing after it ran
    assert f"SIGTERM: stopped at step {step} (epoch 0) and saved" in stderr
    assert not (run_dir(runs["logs"]["sigterm"]) / "metrics.json").exists()

    returncode, stderr = runs["resumed"]["sigterm"]
    assert returncode == 0, stderr[-2000:]
    twin = run_dir(runs["logs"]["twin_a"])
    resumed = runs["resumed_dirs"]["sigterm"]
    assert metrics(resumed) == metrics(twin)  # the stop was in the first epoch: the last one is whole
    assert same_weights(resumed / "checkpoints" / "last.ckpt", twin / "checkpoints" / "last.ckpt")


def test_ctrl_c_after_the_last_validation_resumes_with_ckpt_path_last_and_keeps_the_best(runs):
    returncode, stderr = runs["stopped"]["sigint"]
    step = runs["stopped_steps"]["sigint"]
    assert returncode == 128 + signal.SIGINT and "Traceback" not in stderr
    assert step == LAST_VALIDATION  # the validation the signal landed in finished, then the run stopped
    assert f"SIGINT: stopped at step {step} (epoch 1)" in stderr
    with open(runs["sigint_first_dir"] / "csv" / "metrics.csv") as logged:  # that validation was logged whole
        validated = [int(row["step"]) for row in csv.DictReader(logged) if row.get("val/acc")]
    assert validated[-1] == LAST_VALIDATION - 1  # Lightning logs a validation at the step before it

    returncode, stderr = runs["resumed"]["sigint"]
    assert returncode == 0, stderr[-2000:]
    resumed, first = runs["resumed_dirs"]["sigint"], runs["sigint_first_dir"]
    twin = run_dir(runs["logs"]["twin_a"])
    assert metrics(resumed, LAST_EPOCH_TRAINING) == metrics(twin, LAST_EPOCH_TRAINING)
    # No validation ran after the resume: the best checkpoint is the interrupted run's, kept where it was.
    assert Path(json.loads((resumed / "metrics.json").read_text())["best_ckpt"]).parent == first / "checkpoints"
    assert same_weights(resumed / "checkpoints" / "last.ckpt", twin / "checkpoints" / "last.ckpt")


def test_kill_9_loses_at_most_one_checkpoint_interval_and_a_resume_ends_like_the_uninterrupted_run(runs):
    returncode, _ = runs["stopped"]["sigkill"]
    assert returncode == -signal.SIGKILL
    assert runs["stopped_steps"]["sigkill"] == KILL_STEP - 10  # the step checkpoint before the kill, whole

    returncode, stderr = runs["resumed"]["sigkill"]
    assert returncode == 0, stderr[-2000:]
    twin = run_dir(runs["logs"]["twin_a"])
    resumed = runs["resumed_dirs"]["sigkill"]
    assert metrics(resumed) == metrics(twin)  # killed in the first epoch: the last one is whole
    assert same_weights(resumed / "checkpoints" / "last.ckpt", twin / "checkpoints" / "last.ckpt")


def test_a_second_ctrl_c_stops_at_once_and_saves_nothing(runs):
    returncode, stderr = runs["stopped"]["second_ctrl_c"]
    assert returncode != 0 and "Traceback" not in stderr
    assert "SIGINT: saving a checkpoint once the steps under way end" in stderr  # the first Ctrl-C
    assert "stopped at step" not in stderr  # the second: no save
    # The call ending at step 30 had its checkpoint still to come when the second Ctrl-C landed.
    assert runs["stopped_steps"]["second_ctrl_c"] == SIGTERM_STEP - 10
    assert not (run_dir(runs["logs"]["second_ctrl_c"]) / "metrics.json").exists()
