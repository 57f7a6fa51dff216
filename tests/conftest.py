"""Shared fixtures: the real MNIST files, composed Hydra configs, and a way to run the real entry points."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from convlens.data.mnist_files import ensure_mnist
from convlens.startup.run_task import CONFIG_DIR, PROJECT_ROOT, set_project_root
from convlens.startup.threads import set_threads

set_project_root()

# Several steps per call (src/convlens/chunked/) can be deleted; its tests, and the comparisons with it, go with it.
CHUNKED = importlib.util.find_spec("convlens.chunked") is not None
needs_chunked = pytest.mark.skipif(not CHUNKED, reason="src/convlens/chunked/ (several steps per call) is not here")
collect_ignore_glob = [] if CHUNKED else ["chunked/*"]


@pytest.fixture(autouse=True)
def thread_settings_restored():
    """An in-process run with ``threads=1`` (in a test or a module's fixture) sets OMP_NUM_THREADS and torch's
    thread count for the whole process, as a job must; after each test they are the session's starting values
    again, so the tests after it run as they would alone."""
    yield
    set_threads(None)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The project's real, MD5-verified MNIST (fetched once if missing)."""
    directory = PROJECT_ROOT / "data"
    ensure_mnist(directory)
    return directory


def compose_config(name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """A config exactly as the entry point would see it, with its run folder set to ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(config_name=name, overrides=overrides, return_hydra_config=True)
        HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


# A 10-step real run with no logger, no progress bar and no test: for tests that need a checkpoint to work on.
TINY_RUN = [
    "trainer=cpu",
    "callbacks.rich_progress_bar=null",
    "trainer.enable_model_summary=false",
    "~logger",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=10",
    "trainer.val_check_interval=10",
    "trainer.limit_val_batches=1",
    "test=false",
    "threads=1",
]


@pytest.fixture
def train_config(tmp_path: Path, data_dir: Path):
    """Compose ``train.yaml`` for a tiny real CPU run in ``tmp_path``."""

    def make(*overrides: str) -> DictConfig:
        base = [
            "trainer=cpu",
            f"paths.data_dir={data_dir}",
            "callbacks.rich_progress_bar=null",
            "trainer.enable_model_summary=false",
        ]
        return compose_config("train", [*base, *overrides], tmp_path)

    return make


def run_entry(
    script: str, *overrides: str, cwd: Path = PROJECT_ROOT, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``src/<script>`` as a user would, in a fresh process."""
    command = [sys.executable, str(PROJECT_ROOT / "src" / script), *overrides]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(
            f"{script} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


class RunsCode:
    """A pickle payload that touches ``marker`` when unpickled: proof that a loader ran code it should refuse."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))
