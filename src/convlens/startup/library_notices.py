"""Notices the libraries print on every run that never apply to a convlens run, each silenced by its own words.

Everything else they say (advice on workers, precision, a checkpoint's folder, ...) still prints.
"""

from __future__ import annotations

import logging
import warnings

# Lightning's advertisement for its cloud logger, printed whenever a Trainer is made without it.
LITLOGGER_TIP = "💡 Tip: For seamless cloud logging and experiment tracking"
# conf/hydra/launcher/<plugin>.yaml take the launcher plugins' names so that `hydra/launcher=joblib` picks them;
# Hydra then also validates them against the plugin's schema and says that matching is deprecated. Each file
# writes out every field of that schema, so it means the same without the matching.
LAUNCHER_SCHEMA_MATCH = r"\s*'hydra/launcher/(joblib|submitit_local|submitit_slurm)' is validated against ConfigStore"
RANK_ZERO_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")


def not_the_litlogger_tip(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(LITLOGGER_TIP)


def quiet_library_notices() -> None:
    """Idempotent: every entry point calls it as it is imported."""
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not_the_litlogger_tip not in logger.filters:
            logger.addFilter(not_the_litlogger_tip)
    warnings.filterwarnings("ignore", message=LAUNCHER_SCHEMA_MATCH, category=UserWarning)
