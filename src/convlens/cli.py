"""What every entry point shares: the project root for the configs, and one-line errors instead of tracebacks."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from convlens.errors import ConvlensError
from convlens.resolvers import register_resolvers

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = str(PROJECT_ROOT / "conf")

T = TypeVar("T")

register_resolvers()  # every entry point imports this module before Hydra composes its config


def set_project_root() -> None:
    """``conf/paths`` hangs data and logs off CONVLENS_ROOT, whatever the current directory."""
    os.environ.setdefault("CONVLENS_ROOT", str(PROJECT_ROOT))


def convlens_error_in(error: BaseException | None) -> ConvlensError | None:
    """The ConvlensError behind ``error``: Hydra's instantiate and OmegaConf's resolvers re-raise it wrapped."""
    while error is not None and not isinstance(error, ConvlensError):
        error = error.__cause__ or error.__context__
    return error


def report_errors(task: Callable[[], T]) -> T:
    """Run ``task``; a ConvlensError becomes one red line on stderr and exit code 1 (HYDRA_FULL_ERROR=1: traceback)."""
    try:
        return task()
    except Exception as raised:
        error = convlens_error_in(raised)
        if error is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        Console(stderr=True).print(f"[bold red]error:[/bold red] {error}", soft_wrap=True, highlight=False)
        sys.exit(1)
