"""Bad settings and mistyped overrides: one line naming the key and the fix, before anything is built."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra.utils import instantiate

from conftest import compose_config, run_entry
from convlens.errors import ConvlensError
from convlens.startup.config_checks import check_eval_config, check_train_config
from convlens.startup.run_task import CONFIG_DIR, hydra_error_line, report_errors

BAD_SETTINGS = [
    ("model.optimizer.lr=0", "model.optimizer.lr=0"),
    ("model.optimizer.lr=-0.1", "must be a number above 0"),
    ("model.optimizer.momentum=1.0", "model.optimizer.momentum=1.0 must be at least 0 and below 1"),
    ("model.optimizer.momentum=-0.5", "model.optimizer.momentum"),
    ("model.net.dropout=1.0", "model.net.dropout=1.0"),
    ("model.net.dropout=-0.1", "model.net.dropout"),
    ("model.net.depth=[4]", "model.net.depth=[4] must be two positive integers"),
    ("model.net.depth=[4,0]", "model.net.depth"),
    ("model.net.depth=[4,8.5]", "model.net.depth"),
    ("model.net.hidden=0", "model.net.hidden=0 must be a positive integer"),
    ("data.batch_size=0", "data.batch_size=0"),
    ("data.batch_size=-64", "data.batch_size"),
    ("trainer.val_check_interval=1000", "an epoch has 938 training batches"),
    ("trainer.val_check_interval=1.5", "trainer.val_check_interval=1.5"),
]


@pytest.mark.parametrize(("override", "expected"), BAD_SETTINGS, ids=[o for o, _ in BAD_SETTINGS])
def test_a_bad_setting_is_refused_in_one_line_naming_it(override, expected, tmp_path):
    with pytest.raises(ConvlensError) as error:
        check_train_config(compose_config("train", [override], tmp_path))
    assert expected in str(error.value) and "\n" not in str(error.value)
    assert "try " in str(error.value) or "set " in str(error.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer.limit_train_batches=40", "trainer.val_check_interval=41"],  # 40 batches per epoch
        ["trainer.limit_train_batches=0.01", "trainer.val_check_interval=10"],  # int(938 * 0.01) = 9
        ["data.batch_size=128", "trainer.val_check_interval=470"],  # ceil(60000 / 128) = 469
    ],
)
def test_val_check_interval_counts_the_epoch_as_lightning_does(overrides, tmp_path):
    with pytest.raises(ConvlensError, match="set trainer.val_check_interval to at most"):
        check_train_config(compose_config("train", overrides, tmp_path))


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["trainer.limit_train_batches=40", "trainer.val_check_interval=40"],
        ["data.batch_size=128", "trainer.val_check_interval=469"],
        ["trainer.val_check_interval=0.25"],
        ["trainer.val_check_interval=5000", "trainer.check_val_every_n_epoch=null"],  # counts across epochs
        ["model.optimizer.momentum=0", "model.net.dropout=0"],
        ["debug=fdr"],
    ],
)
def test_good_settings_pass(overrides, tmp_path):
    check_train_config(compose_config("train", overrides, tmp_path))


def hydra_error(override: str) -> HydraException:
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR), pytest.raises(HydraException) as error:
        compose(config_name="train", overrides=[override])
    return error.value


def test_an_unknown_group_option_lists_the_real_ones():
    line = hydra_error_line(hydra_error("trainer=tpu"))
    options = sorted(path.stem for path in (Path(CONFIG_DIR) / "trainer").glob("*.yaml"))
    assert {"cpu", "default", "gpu"} <= set(options)
    assert line == (
        "trainer=tpu is not an option: there is no conf/trainer/tpu.yaml; "
        "choose " + ", ".join(f"trainer={name}" for name in options)
    )


def test_a_misspelled_key_gets_a_suggestion():
    line = hydra_error_line(hydra_error("trainer.max_epoch=3"))
    assert line.startswith("trainer.max_epoch is not a setting (did you mean trainer.max_epochs?")
    assert "+trainer.max_epoch=..." in line and "\n" not in line


def test_an_unreadable_override_is_named():
    line = hydra_error_line(hydra_error("trainer.max_epochs=[3"))
    assert "'trainer.max_epochs=[3'" in line and "\n" not in line


@pytest.mark.slow
def test_the_entry_point_prints_hydra_errors_in_one_line_and_the_traceback_on_request(tmp_path):
    short = run_entry("train.py", "trainer.max_epoch=3", f"hydra.run.dir={tmp_path}", check=False)
    assert short.returncode == 1
    assert short.stderr.strip().splitlines() == ["error: " + hydra_error_line(hydra_error("trainer.max_epoch=3"))]

    full = run_entry("train.py", "trainer=tpu", f"hydra.run.dir={tmp_path}", check=False, env={"HYDRA_FULL_ERROR": "1"})
    assert full.returncode == 1
    assert "Traceback" in full.stderr and "MissingConfigException" in full.stderr


@pytest.mark.slow
def test_the_entry_point_refuses_a_bad_value_before_loading_anything(tmp_path):
    result = run_entry("train.py", "model.optimizer.lr=0", f"hydra.run.dir={tmp_path}", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: model.optimizer.lr=0 must be a number above 0; try model.optimizer.lr=0.001"
    ]
    assert not (tmp_path / "checkpoints").exists()


def test_eval_without_a_checkpoint_says_how_to_name_one(tmp_path):
    with pytest.raises(ConvlensError, match=r"^no checkpoint given; pass ckpt_path=<run dir>/checkpoints/last.ckpt"):
        check_eval_config(compose_config("eval", [], tmp_path))


def test_an_error_raised_inside_a_configured_class_is_one_line_too(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    cfg = compose_config("train", ["data.val_size=0"], tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        report_errors(lambda: instantiate(cfg.data))  # Hydra wraps the DataModule's ConvlensError
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == (
        "error: data.val_size=0 must be between 1 and 9999 so that both the validation and the test half of "
        "MNIST's test set are non-empty; set data.val_size=5000"
    )
