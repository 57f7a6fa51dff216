"""What every entry point shares: the project root for the configs, and one-line errors instead of tracebacks."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from convlens.errors import ConvlensError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = str(PROJECT_ROOT / "conf")

T = TypeVar("T")


def set_project_root() -> None:
    """``conf/paths`` hangs data and logs off CONVLENS_ROOT, whatever the current directory."""
    os.environ.setdefault("CONVLENS_ROOT", str(PROJECT_ROOT))


def report_errors(task: Callable[[], T]) -> T:
    """Run ``task``; a ConvlensError becomes one red line on stderr and exit code 1 (HYDRA_FULL_ERROR=1: traceback)."""
    try:
        return task()
    except ConvlensError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        Console(stderr=True).print(f"[bold red]error:[/bold red] {error}", soft_wrap=True, highlight=False)
        sys.exit(1)
