"""convlens's Optuna sweeper: its search space, its study storage, pruning, resume and shared studies.

Real searches run as a user runs them (``src/train.py hparams_search=mnist_optuna``) on real MNIST, tiny.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from conftest import compose_config, run_entry
from convlens.errors import ConvlensError
from convlens.startup.run_task import PROJECT_ROOT
from convlens.sweeps.search import SearchSettings, sampler_for
from convlens.sweeps.search_space import grid_choices, search_space
from convlens.sweeps.study_storage import open_study
from convlens.sweeps.sweep_dir_claim import claim_sweep_dir

SRC = {"PYTHONPATH": str(PROJECT_ROOT / "src")}

# What hydra-optuna-sweeper 1.3.0 made of each syntax (read from it under optuna 2.10), in Optuna 3+'s classes:
# UniformDistribution → FloatDistribution, LogUniformDistribution → FloatDistribution(log=True),
# IntUniformDistribution → IntDistribution, DiscreteUniformDistribution(q) → FloatDistribution(step=q).
SYNTAX = {
    "a=interval(0.1, 1)": FloatDistribution(0.1, 1.0),
    "a=tag(log, interval(0.001, 0.2))": FloatDistribution(0.001, 0.2, log=True),
    "a=tag(log, interval(1, 100))": FloatDistribution(1.0, 100.0, log=True),
    "a=choice(32, 64, 128)": CategoricalDistribution([32, 64, 128]),
    "a=choice(1, 2, x)": CategoricalDistribution([1, 2, "x"]),
    "model/scheduler=choice(constant, cosine)": CategoricalDistribution(["constant", "cosine"]),
    "a=range(0, 10, 2)": IntDistribution(0, 10, step=2),
    "a=range(0.0, 1.0, 0.25)": FloatDistribution(0.0, 1.0, step=0.25),
    "a=1,2,3": CategoricalDistribution([1, 2, 3]),
}


@pytest.mark.parametrize("line", SYNTAX)
def test_every_search_syntax_parses_to_the_distribution_it_had_before(line):
    space = search_space([line])
    assert list(space.distributions.values()) == [SYNTAX[line]] and not space.fixed


def test_plain_values_are_fixed_and_a_later_override_replaces_an_earlier_one():
    space = search_space(["model.optimizer.lr=interval(0.001, 0.2)", "seed=3", "model.optimizer.lr=1e-7"])
    assert space.distributions == {} and space.fixed == {"model.optimizer.lr": "1e-07", "seed": "3"}
    assert space.trial_overrides({"a": 1}) == ["a=1", "seed=3", "model.optimizer.lr=1e-07"]


@pytest.mark.parametrize("line", ["a=interval(1)", "a=choice(", "a=glob(*)"])
def test_a_bad_search_parameter_is_one_line(line):
    with pytest.raises(ConvlensError) as error:
        search_space([line])
    assert "\n" not in str(error.value) and repr(line) in str(error.value) or "glob" in str(error.value)


def test_a_grid_sampler_refuses_an_interval_in_one_line():
    assert grid_choices(search_space(["a=choice(1, 2)", "b=range(0, 6, 2)"])) == {"a": [1, 2], "b": [0, 2, 4]}
    with pytest.raises(ConvlensError, match="sampler=grid needs a finite set of values, but a is an interval"):
        grid_choices(search_space(["a=interval(0.1, 1)"]))


def proposals(tmp_path: Path, *overrides: str) -> list[dict]:
    cfg = compose_config("train", ["hparams_search=mnist_optuna", *overrides], tmp_path)
    settings = SearchSettings(**{key: cfg.hydra.sweeper[key] for key in SearchSettings.__dataclass_fields__})
    space = search_space(f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items())
    sampler, _ = sampler_for(settings, space)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    return [study.ask(fixed_distributions=space.distributions).params for _ in range(3)]


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes"])
def test_the_same_seed_proposes_the_same_trials(sampler, tmp_path):
    overrides = [f"hydra/sweeper/sampler={sampler}", "hydra.sweeper.sampler.seed=7"]
    if sampler == "random":
        overrides = [*overrides[:1], "~hydra.sweeper.sampler.n_startup_trials", overrides[1]]
    assert proposals(tmp_path, *overrides) == proposals(tmp_path, *overrides)
    assert proposals(tmp_path, *overrides) != proposals(tmp_path, *overrides[:-1], "hydra.sweeper.sampler.seed=8")


def test_storage_urls_and_their_one_line_refusals(tmp_path):
    journal = open_study(f"journal://{tmp_path}/study.log", "s", "maximize")
    assert journal.direction.name == "MAXIMIZE" and (tmp_path / "study.log").exists()
    assert open_study(f"sqlite:///{tmp_path}/x.db", "s", "minimize").direction.name == "MINIMIZE"
    with pytest.raises(ConvlensError, match="already exists and minimizes, but hydra.sweeper.direction=maximize"):
        open_study(f"sqlite:///{tmp_path}/x.db", "s", "maximize")
    with pytest.raises(ConvlensError, match="foo://x is not a storage URL; use sqlite:///<file>, journal:///<file>"):
        open_study("foo://x", "s", "maximize")
    (tmp_path / "x.db").chmod(0o444)
    before = (tmp_path / "x.db").read_bytes()
    with pytest.raises(ConvlensError, match=r"x.db is read-only, so the study cannot record trials"):
        open_study(f"sqlite:///{tmp_path}/x.db", "s", "minimize")
    assert (tmp_path / "x.db").read_bytes() == before


def test_a_sweep_dir_is_claimed_by_one_grid_or_by_the_sweepers_of_one_search(tmp_path):
    grid = claim_sweep_dir(tmp_path / "grid", None)
    with pytest.raises(ConvlensError, match="another sweep is running in hydra.sweep.dir=.*grid"):
        claim_sweep_dir(tmp_path / "grid", None)
    with pytest.raises(ConvlensError, match="another sweep is running"):
        claim_sweep_dir(tmp_path / "grid", "search sqlite:///x.db s")
    os.close(grid)
    os.close(claim_sweep_dir(tmp_path / "grid", None))  # the lock ends with its holder
    search = "search sqlite:///x.db s"
    shared = [claim_sweep_dir(tmp_path / "search", search) for _ in range(2)]
    with pytest.raises(ConvlensError, match="another sweep is running"):
        claim_sweep_dir(tmp_path / "search", None)
    assert (tmp_path / "search" / ".sweep.kind").read_text() == search + "\n"
    for descriptor in shared:
        os.close(descriptor)


@pytest.fixture
def tiny_search(data_dir: Path) -> tuple[str, ...]:
    """A search of tiny real jobs: 40 steps validated every 20, one thread, no pictures, quick heartbeats."""
    return (
        "hparams_search=mnist_optuna",
        "trainer=cpu",
        f"paths.data_dir={data_dir}",
        "threads=1",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=40",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=1",
        "trainer.val_check_interval=20",
        "callbacks.rich_progress_bar=null",
        "callbacks.convnet_pictures=null",
        "trainer.enable_model_summary=false",
        "hydra.sweeper.heartbeat_seconds=1",
        "hydra.sweeper.stale_after_seconds=4",
    )


def metrics_of(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def study_of(sweep: Path) -> optuna.Study:
    return optuna.load_study(study_name="mnist_optuna", storage=f"sqlite:///{sweep}/optuna.db")


def search_command(*overrides: str) -> list[str]:
    return [sys.executable, str(PROJECT_ROOT / "src" / "train.py"), *overrides]


@pytest.mark.slow
def test_a_hopeless_trial_is_pruned_and_leaves_a_complete_folder(tiny_search, tmp_path):
    sweep = tmp_path / "sweep"
    # The grid's seed 1 runs lr 0.05 first; the median pruner may prune from the second trial on, at any step.
    run_entry(
        "train.py",
        *tiny_search,
        "hydra/sweeper/sampler=grid",
        "~hydra.sweeper.sampler.n_startup_trials",
        "hydra.sweeper.sampler.seed=1",
        "hydra.sweeper.params=null",
        "model.optimizer.lr=choice(0.05,1e-7)",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0",
        f"hydra.sweep.dir={sweep}",
        env=SRC,
    )

    good, hopeless = study_of(sweep).trials
    assert good.params == {"model.optimizer.lr": 0.05} and good.state == TrialState.COMPLETE
    assert hopeless.params == {"model.optimizer.lr": 1e-7} and hopeless.state == TrialState.PRUNED
    assert hopeless.value == hopeless.intermediate_values[20]  # pruned at the first check, its value kept
    saved = metrics_of(sweep / "1")
    assert (saved["status"], saved["pruned_at_step"], saved["trial_number"], saved["steps"]) == ("pruned", 20, 1, 20)
    assert metrics_of(sweep / "0")["status"] == "complete" and metrics_of(sweep / "0")["steps"] == 40
    assert (sweep / "1" / "checkpoints" / "last.ckpt").is_file() and saved["test/acc"] is not None
    assert list((sweep / "1" / "tensorboard").glob("events.*"))


@pytest.mark.slow
def test_a_killed_search_continues_with_the_same_command(tiny_search, tmp_path):
    sweep = tmp_path / "sweep"
    command = search_command(
        *tiny_search,
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.pruner=null",
        "hydra/sweeper/pruner=none",
        f"hydra.sweep.dir={sweep}",
    )
    process = subprocess.Popen(command, env={**os.environ, **SRC}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (sweep / "1" / ".hydra").is_dir() and time.monotonic() < deadline:  # trial 1 has started
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    first = (sweep / "0" / "metrics.json").read_text()

    resumed = run_entry("train.py", *command[2:], env=SRC)  # the failed trial was replaced: the search succeeded
    assert "1 failed trials were replaced: job 1" in resumed.stdout

    states = {trial.number: trial.state for trial in study_of(sweep).trials}
    assert states[1] == TrialState.FAIL, "the killed trial is accounted for"
    assert sum(state == TrialState.COMPLETE for state in states.values()) == 3 and len(states) == 4
    assert (sweep / "0" / "metrics.json").read_text() == first, "a finished trial's folder is never rewritten"
    assert not (sweep / "1" / "metrics.json").exists()
    assert [metrics_of(sweep / str(n))["trial_number"] for n in (2, 3)] == [2, 3]


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_two_sweepers_share_one_study(storage, tiny_search, tmp_path):
    sweep = tmp_path / "sweep"
    url = f"journal://{sweep}/study.log" if storage == "journal" else f"sqlite:///{sweep}/optuna.db"
    command = search_command(
        *tiny_search,
        "hydra.sweeper.n_trials=4",
        "trainer.limit_train_batches=20",
        f"hydra.sweeper.storage={url}",
        f"hydra.sweep.dir={sweep}",
    )
    both = [
        subprocess.Popen(command, env={**os.environ, **SRC}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=600) for process in both]
    assert [process.returncode for process in both] == [0, 0], outputs

    study = optuna.load_study(
        study_name="mnist_optuna",
        storage=url
        if storage == "sqlite"
        else optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(f"{sweep}/study.log")),
    )
    assert [trial.state for trial in study.trials].count(TrialState.COMPLETE) == 4
    numbers = [trial.number for trial in study.trials]
    assert len(set(numbers)) == len(numbers) == 4
    assert all(metrics_of(sweep / str(n))["trial_number"] == n for n in numbers)
    ran = [
        [int(line.split()[1].rstrip(":")) for line in out.splitlines() if line.endswith(": complete")]
        for out, _ in outputs
    ]
    assert all(ran) and sorted(ran[0] + ran[1]) == numbers, "each sweeper ran trials of the shared study"


@pytest.mark.slow
def test_bad_search_settings_are_one_line_each_and_touch_nothing(tiny_search, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    optuna.create_study(study_name="mnist_optuna", storage=f"sqlite:///{used}/optuna.db", direction="minimize")
    cases = {
        "hydra/sweeper/sampler=annealing": "hydra/sweeper/sampler=annealing is not an option",
        "hydra/sweeper/pruner=patience": "hydra/sweeper/pruner=patience is not an option",
        "hydra.sweeper.storage=postgres:/nowhere": "is not a storage URL",
        f"hydra.sweep.dir={used}": "already exists and minimizes, but hydra.sweeper.direction=maximize",
    }
    for override, message in cases.items():
        sweep_dir = () if override.startswith("hydra.sweep.dir") else (f"hydra.sweep.dir={tmp_path / 'new'}",)
        args = (*tiny_search, *sweep_dir, override)
        result = run_entry("train.py", *args, check=False, env=SRC)
        assert result.returncode == 1, override
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and message in line, (override, line)
    assert len(study_of(used).trials) == 0 and not list((tmp_path / "new").glob("*/.hydra"))


@pytest.mark.slow
def test_two_grids_started_at_once_into_one_folder_the_second_is_refused(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    grid = (
        "-m",
        "trainer=cpu",
        f"paths.data_dir={data_dir}",
        "threads=1",
        "debug=limit",
        "callbacks.rich_progress_bar=null",
        "callbacks.convnet_pictures=null",
        f"hydra.sweep.dir={sweep}",
    )
    first = subprocess.Popen(
        search_command(*grid, "seed=1,2"),
        env={**os.environ, **SRC},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (sweep / ".sweep.kind").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    second = run_entry("train.py", *grid, "seed=3,4", check=False, env=SRC)
    assert first.wait(timeout=600) == 0, first.stderr.read()

    assert second.returncode == 1
    (line,) = second.stderr.strip().splitlines()
    # Refused by the claim while the first starts, or by its job folders once they exist: never let in.
    assert line.startswith(
        (
            f"error: another sweep is running in hydra.sweep.dir={sweep}",
            f"error: hydra.sweep.dir={sweep} already holds the jobs of an earlier sweep",
        )
    )
    assert [metrics_of(sweep / name)["status"] for name in ("0", "1")] == ["complete", "complete"]
    assert not (sweep / "2").exists()
    assert "seed=3" not in (sweep / "0" / "train.log").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_a_search_runs_its_trials_through_worker_processes_or_the_launcher(launcher, tiny_search, tmp_path):
    sweep = tmp_path / "sweep"
    no_threads = tuple(item for item in tiny_search if not item.startswith("threads="))
    run_entry(
        "train.py",
        *no_threads,
        f"hydra/launcher={launcher}",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=3",
        "trainer.limit_train_batches=20",
        f"hydra.sweep.dir={sweep}",
        env=SRC,
    )

    assert [trial.state for trial in study_of(sweep).trials] == [TrialState.COMPLETE] * 3
    assert [metrics_of(sweep / str(n))["trial_number"] for n in range(3)] == [0, 1, 2]
    written = OmegaConf.load(sweep / "multirun.yaml").hydra.sweeper  # where the report finds the study
    assert written._target_.endswith("ConvlensOptunaSweeper") and written.study_name == "mnist_optuna"
    if launcher == "joblib":  # the sweeper's own workers divide the cores as joblib's do
        import joblib

        assert metrics_of(sweep / "0")["torch_threads"] == max(1, joblib.cpu_count() // 2)
    else:
        assert list((sweep / ".submitit").glob("*/*_log.out"))


def test_a_search_composes_with_the_slurm_launcher(tmp_path):
    cfg = compose_config(
        "train",
        ["hparams_search=mnist_optuna", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu", "trainer=gpu"],
        tmp_path,
    )
    assert cfg.hydra.sweeper._target_.endswith("ConvlensOptunaSweeper")
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.partition == "gpu"
