"""The sweep report for any set of training runs: ``scripts/compare_runs.py logs/train/runs/*``.

Runs are compared by their whole configuration (``.hydra/config.yaml``), not by what was typed, so a run given
``model.optimizer.lr=0.001`` on the command line and one left at that default are the same setting. Settings
that differ become the table's columns; runs that differ only by ``seed`` are one row (mean ± std); a run is
called by its ``run_name`` if it has one, else by its folder. Where each run keeps its files (``paths.*``) and
its name are not settings.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from convlens.errors import ConvlensError
from convlens.sweeps.report import Job, SweepReport, check_metric_and_mode, group_rows, read_results, swept_and_common

NOT_SETTINGS = ("paths.", "hydra.", "run_name", "task_name")  # key prefixes that say where or what, not how


def flat_settings(node: Any, prefix: str = "") -> list[str]:
    """Every setting as ``key=value``, nested keys joined by dots; interpolations as written (the same in every
    run) rather than resolved (some need the Hydra run they came from)."""
    if not isinstance(node, dict):
        return [f"{prefix[:-1]}={node}"]
    return [
        item
        for key, value in node.items()
        if not f"{prefix}{key}".startswith(NOT_SETTINGS)
        for item in flat_settings(value, f"{prefix}{key}.")
    ]


def read_run(run_dir: Path) -> Job:
    config = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), resolve=False)
    assert isinstance(config, dict)  # Hydra saves a run's config as a mapping
    return Job(str(config.get("run_name") or run_dir.name), run_dir, flat_settings(config), *read_results(run_dir))


def why_not_a_run(path: Path) -> str | None:
    """None for a run's folder; else what it is instead, in words."""
    if not path.exists():
        return "does not exist"
    if not path.is_dir():
        return "a file, not a run's folder"
    if (path / ".hydra" / "config.yaml").is_file():
        return None
    if any(path.glob("*/.hydra/overrides.yaml")):
        return "a multirun: its report is scripts/sweep_report.py's"
    return "no .hydra/config.yaml, so not a run's folder"


def expanded(arguments: Iterable[str]) -> list[Path]:
    """The folders named, a quoted glob (``'logs/train/runs/*'``) expanded as a shell would, in order, once each."""
    paths = [
        Path(found)
        for argument in arguments
        for found in (sorted(glob.glob(argument)) if glob.has_magic(argument) else [argument]) or [argument]
    ]
    return list(dict.fromkeys(paths))


def build_comparison(
    arguments: Iterable[str],
    out_dir: Path,
    metric: str = "val/acc_best",
    mode: str = "max",
) -> tuple[SweepReport, dict[Path, str]]:
    """The report of the runs ``arguments`` name, to be written into ``out_dir``; and what was skipped, with why."""
    runs, skipped = [], {}
    for path in expanded(arguments):
        why = why_not_a_run(path)
        if why is None:
            runs.append(read_run(path))
        else:
            skipped[path] = why
    if not runs:
        raise ConvlensError(
            "none of the folders given is a training run; pass run folders or a glob such as logs/train/runs/*"
        )
    check_metric_and_mode(runs, metric, mode)
    swept, _ = swept_and_common(runs)  # what every run shares is its whole config: not listed
    report = SweepReport(
        out_dir, metric, mode, runs, swept, [], group_rows(runs, swept, metric, mode), title="Runs compared"
    )
    return report, skipped
