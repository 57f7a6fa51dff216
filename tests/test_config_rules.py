"""Generated from conf/: every setting of every config and group option has a declared type and range, and a
wrong type or an out-of-range value in it is refused in one line naming it, before anything runs."""

from __future__ import annotations

import copy
import functools
import json
import tempfile
from pathlib import Path

import pytest
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from conftest import compose_config, run_entry
from convlens.errors import ConvlensError
from convlens.startup.config_checks import check_settings, settings
from convlens.startup.config_rules import RULES
from convlens.startup.run_task import CONFIG_DIR

CONF = Path(CONFIG_DIR)
PRIMARY = sorted(path.stem for path in CONF.glob("*.yaml"))  # eval, predict, train, visualize
SKIPPED_GROUPS = {"hydra"}  # Hydra's own settings and its plugins' schemas


def group_options() -> list[str]:
    """Every option of every config group, as the override that picks it, e.g. ``model/scheduler=cosine``."""
    options = []
    for file in sorted(CONF.rglob("*.yaml")):
        group = file.parent.relative_to(CONF).as_posix()
        if group != "." and group.split("/")[0] not in SKIPPED_GROUPS:
            options.append(f"{group}={file.stem}")
    return options


def composed(override: str | None, tmp_path: Path) -> DictConfig:
    """The first primary config that takes ``override`` (a group only some of them use)."""
    for name in PRIMARY:
        try:
            return compose_config(name, [override] if override else [], tmp_path)
        except HydraException:
            continue
    raise AssertionError(f"no config in conf/ accepts {override}")


CASES = [(name, None) for name in PRIMARY] + [(None, option) for option in group_options()]


def config_for(name: str | None, option: str | None, tmp_path: Path) -> DictConfig:
    if name is not None:
        return compose_config(name, [], tmp_path)
    cfg = composed(option, tmp_path)
    if option == "data=imagefolder":  # its class names are read from the folder: one is needed to see them
        with open_dict(cfg):
            cfg.data.class_names = ["one", "two"]
    return cfg


@functools.cache
def first_case_of_each_key() -> dict[str, tuple[str | None, str | None]]:
    """Each setting's first config: its bad values are tried there once, not again in every group option."""
    first: dict[str, tuple[str | None, str | None]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for case in CASES:
            name, option = case
            for key, _, _ in settings(config_for(name, option, Path(folder))):
                first.setdefault(key, case)
    return first


@pytest.mark.parametrize(("name", "option"), CASES, ids=[name or option for name, option in CASES])
def test_every_setting_is_declared_and_refuses_bad_values_in_one_line(name, option, tmp_path):
    cfg = config_for(name, option, tmp_path)
    check_settings(cfg)  # the config as written passes
    keys = [key for key, _, _ in settings(cfg)]
    undeclared = [key for key in keys if key not in RULES]
    assert not undeclared, f"declare {undeclared} in src/convlens/startup/config_rules.py RULES"
    for key in keys:
        if first_case_of_each_key()[key] != (name, option):
            continue
        rule = RULES[key]
        for value in [rule.wrong_type(), *rule.out_of_range]:
            broken = copy.deepcopy(cfg)
            OmegaConf.update(broken, key, value, force_add=True)
            with pytest.raises(ConvlensError) as error:
                check_settings(broken)
                pytest.fail(f"{key}={value!r} passed the check")
            message = str(error.value)
            assert message.startswith(f"{key}="), (key, value, message)
            assert "\n" not in message and f"; try {key}=" in message


def test_every_declared_key_is_a_setting_somewhere():
    """A rule for a key no config has any more is a stale declaration."""
    assert set(RULES) - set(first_case_of_each_key()) == set()


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("seed=abc", "error: seed=abc must be an integer at least 0 and at most 4294967295 or null; try seed=12345"),
        ("seed=-1", "error: seed=-1 must be an integer at least 0 and at most 4294967295 or null; try seed=12345"),
        ("threads=-3", "error: threads=-3 must be a positive integer or null; try threads=1"),
        ("threads=0", "error: threads=0 must be a positive integer or null; try threads=1"),
        (
            "trainer.max_epochs=abc",
            "error: trainer.max_epochs=abc must be a positive integer; try trainer.max_epochs=20",
        ),
        ("trainer.max_epochs=0", "error: trainer.max_epochs=0 must be a positive integer; try trainer.max_epochs=20"),
        ("trainer.max_epochs=-1", "error: trainer.max_epochs=-1 must be a positive integer; try trainer.max_epochs=20"),
    ],
)
def test_the_issues_bad_values_are_one_line(override, line, tmp_path):
    with pytest.raises(ConvlensError) as error:
        check_settings(compose_config("train", [override], tmp_path))
    assert f"error: {error.value}" == line


def test_val_check_interval_zero_says_the_rule(tmp_path):
    with pytest.raises(
        ConvlensError,
        match=r"^trainer.val_check_interval=0 must be a number of training batches "
        r"\(integer >= 1\)",
    ):
        check_settings(compose_config("train", ["trainer.val_check_interval=0"], tmp_path))


def test_an_interpolated_value_names_where_it_came_from(tmp_path):
    cfg = compose_config("train", ["model/scheduler=cosine"], tmp_path)
    with open_dict(cfg):
        cfg.model.scheduler.T_max = "${seed}"
        cfg.seed = None
    with pytest.raises(ConvlensError, match=r"^model.scheduler.T_max=null \(from \$\{seed\}\) must be"):
        check_settings(cfg)


@pytest.mark.slow
def test_the_entry_point_prints_one_line_for_a_bad_seed(tmp_path):
    result = run_entry("train.py", "seed=abc", f"hydra.run.dir={tmp_path}", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: seed=abc must be an integer at least 0 and at most 4294967295 or null; try seed=12345"
    ]


@pytest.mark.slow
def test_a_multirun_job_with_a_bad_value_fails_alone_and_the_report_is_written(data_dir, tmp_path):
    result = run_entry(
        "train.py",
        "-m",
        "seed=abc,1",
        "debug=fdr",
        "callbacks.rich_progress_bar=null",
        "trainer.enable_model_summary=false",
        f"paths.data_dir={data_dir}",
        f"hydra.sweep.dir={tmp_path}",
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: job 0 (seed=abc " in result.stderr and "): seed=abc must be" in result.stderr
    assert (tmp_path / "0" / "error.txt").read_text().startswith("seed=abc must be")
    assert json.loads((tmp_path / "1" / "metrics.json").read_text())["steps"] == 1
    assert "1 of 2 jobs failed" in result.stderr and (tmp_path / "report.md").is_file()
