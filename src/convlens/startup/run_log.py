"""The run's log file (``<run dir>/<task>.log``) holds what the run printed, as plain text.

The terminal gets rich output; conf/hydra/default.yaml points Python logging at the log file alone. ``print_and_log``
prints to the terminal and logs the same words; ``join_run_log`` adds Lightning's logger and Python warnings
to the file, and ``log_failure`` adds a failed run's traceback, which the terminal does not show; ``print_error``
is the one red line every entry point and sweep job prints for an error, with that traceback in the file.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.text import Text

log = logging.getLogger("convlens")
log.addHandler(logging.NullHandler())  # outside a Hydra job nothing is configured: stay quiet, not lastResort
console = Console()
error_console = Console(stderr=True)
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")
LOG_WIDTH = 120  # columns tables are laid out in, in the log file


def markup_as_text(renderable: RenderableType) -> str:
    """What the terminal shows, without colour or markup."""
    if isinstance(renderable, str):
        return Text.from_markup(renderable).plain
    text = io.StringIO()
    Console(file=text, width=LOG_WIDTH, color_system=None, soft_wrap=False).print(renderable)
    return text.getvalue().rstrip("\n")


def print_and_log(
    renderable: RenderableType, *, stderr: bool = False, level: int = logging.INFO, **options: Any
) -> None:
    """Print ``renderable`` (rich markup: escape user text with ``rich.markup.escape``) and log it as plain text."""
    (error_console if stderr else console).print(renderable, **options)
    log.log(level, markup_as_text(renderable))


def print_error(message: str, raised: BaseException | None = None) -> None:
    """One red line on the terminal; inside a job, the line and the traceback of ``raised`` in its log file."""
    error_console.print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True, highlight=False)
    if raised is not None:
        log_failure(f"error: {message}", raised)


def log_failure(line: str, raised: BaseException) -> None:
    """The one line the terminal shows, with the full traceback below it, into the log file."""
    log.error(line, exc_info=(type(raised), raised, raised.__traceback__))


def log_config(cfg: DictConfig) -> None:
    log.info("configuration:\n%s", OmegaConf.to_yaml(cfg).rstrip())


def tee_warnings() -> None:
    """Python warnings (Lightning's advice among them) still print as before, and go to the log too."""
    shown = warnings.showwarning
    if getattr(shown, "logs_too", False):
        return

    def show_and_log(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        shown(message, category, filename, lineno, file, line)
        log.warning("%s: %s", category.__name__, message)

    show_and_log.logs_too = True  # type: ignore[attr-defined]  # a mark read above, against wrapping twice
    warnings.showwarning = show_and_log


def join_run_log() -> None:
    """Lightning's loggers keep their terminal handler and also reach the log file (through the root logger)."""
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).propagate = True
    tee_warnings()
