"""The Hydra side of convlens's Optuna sweeper: what Hydra instantiates from ``conf/hydra/sweeper/optuna.yaml``.

Hydra imports every module under ``hydra_plugins`` at start-up to find plugins, in every run, so this one
imports nothing heavy: the search itself (Optuna, SQLAlchemy) is ``convlens.sweeps.search``, imported by
``sweep``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


class ConvlensOptunaSweeper(Sweeper):
    """Ask-and-tell Optuna search with pruning, never-waiting slots, resume and shared studies."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> None:
        from convlens.faults.atomic_files import replaced_atomically
        from convlens.sweeps.search import SearchSettings, run_search
        from convlens.sweeps.slots import Slots

        config, launcher, hydra_context = self.config, self.launcher, self.hydra_context
        assert config is not None and launcher is not None and hydra_context is not None  # setup() ran first
        settings = SearchSettings(**self.settings)

        def slots_of(n_jobs: int) -> Slots:
            return Slots(launcher, n_jobs, hydra_context, config, self.task_function)

        sweep_dir = Path(config.hydra.sweep.dir)
        with replaced_atomically(sweep_dir / "multirun.yaml") as path:  # as Hydra's basic sweeper writes it
            OmegaConf.save(config, path)
        run_search(settings, slots_of, arguments, sweep_dir)
