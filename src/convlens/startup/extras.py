"""Optional extras (pyproject's ``export``, ``mlflow``, ``wandb``): imported when a command needs one, and
refused in one line naming the pip command when it is not installed."""

from __future__ import annotations

import importlib
from types import ModuleType

from convlens.errors import ConvlensError


def import_extra(module: str, extra: str, needed_by: str) -> ModuleType:
    """``module``, or a ConvlensError saying that ``needed_by`` (e.g. ``format=onnx``) needs the extra ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ConvlensError(
            f"{needed_by} needs {module}, which is not installed here ({error}); pip install -e '.[{extra}]'"
        ) from error
