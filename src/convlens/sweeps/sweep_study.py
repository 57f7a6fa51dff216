"""A sweep dir's own record: its multirun config, the grid it was asked to run, and the Optuna study of a search.

Read after the fact (by the report, the dashboard, or the Ctrl-C path), so nothing here writes: a study is opened
on a storage that must already exist (no tables made, no file created), and a grid's jobs are expanded from the
overrides the sweep was started with, exactly as Hydra's basic sweeper expanded them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import optuna
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from convlens.errors import ConvlensError
from convlens.sweeps.study_storage import JOURNAL, storage_file

MULTIRUN_FILE = "multirun.yaml"  # Hydra's basic sweeper saves the sweep's config there before any job starts
DEFAULT_DB = "optuna.db"  # conf/hparams_search/*.yaml keep a search's study in <sweep dir>/optuna.db
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@dataclass(frozen=True)
class StudyLocation:
    storage: str  # an Optuna storage URL: sqlite:///..., journal:///..., postgresql://..., mysql://...
    study_name: str | None  # None: the storage's only study


def multirun_config(sweep_dir: Path) -> DictConfig | None:
    """The config the sweep ran with, its ``hydra.sweep.dir`` pinned to the folder it is read from.

    Hydra saves it unresolved; the sweep dir's own ``${now:...}`` would resolve to today, so it is set back.
    """
    path = Path(sweep_dir) / MULTIRUN_FILE
    if not path.is_file():
        return None
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise ConvlensError(f"{path} is not a sweep's config (it holds a list); pass a sweep dir Hydra wrote")
    with open_dict(cfg):
        cfg.hydra.sweep.dir = str(Path(sweep_dir).resolve())
    return cfg


def is_grid(cfg: DictConfig | None) -> TypeGuard[DictConfig]:
    return cfg is not None and OmegaConf.select(cfg, "hydra.sweeper._target_", default=None) == BASIC_SWEEPER


def grid_jobs(cfg: DictConfig) -> list[list[str]]:
    """Every job's overrides, in job-number order, as Hydra's basic sweeper numbered them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # Hydra's own expansion, not a copy of it
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{key}={value}" for key, value in (OmegaConf.select(cfg, "hydra.sweeper.params") or {}).items()]
    arguments = [*params, *(str(item) for item in cfg.hydra.overrides.task)]
    return BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(arguments), None)[0]


def study_location(sweep_dir: Path, cfg: DictConfig | None = None) -> StudyLocation | None:
    """Where a search's study lives: ``hydra.sweeper.storage`` of its config, else ``<sweep dir>/optuna.db``."""
    cfg = cfg if cfg is not None else multirun_config(sweep_dir)
    storage = name = None
    if cfg is not None and not is_grid(cfg):
        storage = OmegaConf.select(cfg, "hydra.sweeper.storage", default=None, throw_on_resolution_failure=False)
        name = OmegaConf.select(cfg, "hydra.sweeper.study_name", default=None, throw_on_resolution_failure=False)
    if storage is None and (Path(sweep_dir) / DEFAULT_DB).is_file():
        storage = f"sqlite:///{Path(sweep_dir).resolve() / DEFAULT_DB}"
    return StudyLocation(str(storage), None if name is None else str(name)) if storage else None


def open_existing_storage(url: str) -> BaseStorage:
    """The storage behind ``url``, which must exist already: reading a study never makes an empty one."""
    path = storage_file(url)
    if path is not None and not path.is_file():
        raise ConvlensError(
            f"the study storage {url} does not exist ({path} is missing); pass a search's sweep dir "
            "or the storage URL it used (hydra.sweeper.storage)"
        )
    try:
        if url.startswith(JOURNAL):
            return JournalStorage(JournalFileBackend(str(path)))
        return RDBStorage(url, skip_table_creation=True)
    except Exception as error:  # SQLAlchemy's and the drivers' errors have no common base
        raise ConvlensError(
            f"the study storage {url} cannot be opened ({str(error).splitlines()[0]}); check the "
            "URL, and that its database driver is installed"
        ) from error


def load_study(location: StudyLocation) -> optuna.Study:
    storage = open_existing_storage(location.storage)
    names = optuna.get_all_study_names(storage)
    name = location.study_name
    if name is None and len(names) == 1:
        name = names[0]
    if name not in names:
        raise ConvlensError(
            f"the storage {location.storage} holds no study {name!r} (its studies: "
            f"{', '.join(names) or 'none'}); pass hydra.sweeper.study_name of the search"
        )
    return optuna.load_study(study_name=name, storage=storage)


def newest_search(multiruns: Path) -> Path:
    """The sweep dir under ``multiruns`` whose study changed last (the search running now, or the last one)."""
    searches = [path for path in Path(multiruns).glob("*/") if study_location(path) is not None]
    if not searches:
        raise ConvlensError(
            f"no search under {multiruns} (no sweep dir with an optuna.db or a "
            "hydra.sweeper.storage); start one with python src/train.py hparams_search=mnist_optuna, "
            "or pass a sweep dir or storage URL"
        )
    return max(searches, key=last_change)


def last_change(sweep_dir: Path) -> float:
    files = [sweep_dir / DEFAULT_DB, sweep_dir / MULTIRUN_FILE]
    return max((path.stat().st_mtime for path in files if path.is_file()), default=sweep_dir.stat().st_mtime)


def storage_of(target: str) -> str:
    """A storage URL as given, or the storage of the search in the sweep dir ``target``."""
    if "://" in target:
        return target
    location = study_location(Path(target)) if Path(target).is_dir() else None
    if location is None:
        raise ConvlensError(
            f"{target} is neither a storage URL nor a search's sweep dir (one with an optuna.db or a "
            "hydra.sweeper.storage in its multirun.yaml); pass one of those"
        )
    return location.storage
