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
from convlens.cli.entry import PROJECT_ROOT
from convlens.errors import ConvlensError
from convlens.sweeps.search import SearchSettings, sampler_for
from convlens.sweeps.search_space import grid_choices, search_space
from convlens.sweeps.study_storage import open_study

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
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=False)
    settings = SearchSettings(**{key: cfg.hydra.sweeper[key] for key in SearchSettings.__dataclass_fields__})
    space = search_space(f"{key}={value}" for key, value in sweeper["params"].items())
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
