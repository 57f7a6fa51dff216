from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from conftest import compose_config
from convlens.startup.run_task import CONFIG_DIR

# Groups only other entry points use are tested there.
TRAIN_GROUPS = {
    name
    for entry in OmegaConf.load(Path(CONFIG_DIR) / "train.yaml").defaults
    if isinstance(entry, DictConfig)
    for name in entry
}
GROUPS = sorted(p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir() and p.name in TRAIN_GROUPS - {"hydra"})


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize("option", [f"{g}={o}" for g in GROUPS for o in group_options(g)])
def test_every_option_of_every_group_composes_and_resolves(option, tmp_path):
    cfg = compose_config("train", [option], tmp_path)
    assert cfg.trainer.max_epochs >= 1
    assert cfg.model.net.depth


@pytest.mark.parametrize("option", group_options("model/scheduler"))
def test_every_scheduler_composes(option, tmp_path):
    cfg = compose_config("train", [f"model/scheduler={option}"], tmp_path)
    assert cfg.model.scheduler._target_.startswith("torch.optim.lr_scheduler.")


def test_eval_config_composes(tmp_path):
    cfg = compose_config("eval", ["ckpt_path=some.ckpt"], tmp_path)
    assert cfg.ckpt_path == "some.ckpt"


def test_defaults_are_the_tutorial_protocol(tmp_path):
    cfg = compose_config("train", [], tmp_path)
    assert cfg.trainer.max_epochs == 20 and cfg.trainer.val_check_interval == 100
    assert cfg.data.batch_size == 64 and cfg.data.val_size == 5000
    assert cfg.model.optimizer.lr == 0.001 and cfg.model.optimizer.momentum == 0.9
    assert list(cfg.model.net.depth) == [4, 8] and cfg.model.net.hidden == 512 and cfg.model.net.dropout == 0.5
    assert cfg.seed is not None
    assert Path(cfg.paths.data_dir).name == "data"


def test_model_and_datamodule_instantiate_from_config(tmp_path):
    cfg = compose_config("train", ["model.net.hidden=32"], tmp_path)
    model = instantiate(cfg.model)
    assert model.net.fc1.out_features == 32
    assert instantiate(cfg.data).hparams.batch_size == 64
