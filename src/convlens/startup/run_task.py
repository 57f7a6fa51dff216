"""What every entry point shares: the project root for the configs, and one-line errors instead of tracebacks."""

from __future__ import annotations

import difflib
import os
import re
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, InterpolationKeyError, InterpolationResolutionError

from convlens.errors import ConvlensError
from convlens.startup.library_notices import quiet_library_notices
from convlens.startup.resolvers import register_resolvers
from convlens.startup.run_log import join_run_log, log_failure, print_error

PROJECT_ROOT = Path(__file__).resolve().parents[3]  # src/convlens/startup/run_task.py -> the checkout
CONFIG_DIR = str(PROJECT_ROOT / "conf")

# The user's HYDRA_FULL_ERROR, kept aside while Hydra composes the config (see ``run_hydra``).
USER_FULL_ERROR = "CONVLENS_USER_HYDRA_FULL_ERROR"

T = TypeVar("T")

register_resolvers()  # every entry point imports this module before Hydra composes its config
quiet_library_notices()


def set_project_root() -> None:
    """``conf/paths`` hangs data and logs off CONVLENS_ROOT, whatever the current directory."""
    os.environ.setdefault("CONVLENS_ROOT", str(PROJECT_ROOT))


def restore_user_full_error() -> None:
    """Once the task runs, HYDRA_FULL_ERROR is the user's again, for Hydra's reports and ours."""
    if USER_FULL_ERROR in os.environ:
        user = os.environ.pop(USER_FULL_ERROR)
        if user:
            os.environ["HYDRA_FULL_ERROR"] = user
        else:
            os.environ.pop("HYDRA_FULL_ERROR", None)


def convlens_error_in(error: BaseException | None) -> ConvlensError | None:
    """The ConvlensError behind ``error``: Hydra's instantiate and OmegaConf's resolvers re-raise it wrapped."""
    while error is not None and not isinstance(error, ConvlensError):
        error = error.__cause__ or error.__context__
    return error


def task_begins() -> None:
    """From here Ctrl-C is a KeyboardInterrupt again (printed as one line); while starting, startup/early_ctrl_c.py's
    handler ended the process at once."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def report_errors(task: Callable[[], T]) -> T | None:
    """Run ``task``; a ConvlensError becomes one red line on stderr and exit code 1 (HYDRA_FULL_ERROR=1: traceback).

    The one start of every entry point's task (train, eval, predict, visualize, the app, a sweep's job): the run's
    log file gets the line and the traceback either way, and Ctrl-C is a KeyboardInterrupt from here on. In a
    multirun a ConvlensError fails only this job, which returns None (``sweeps.multirun.fail_this_job``).
    """
    restore_user_full_error()  # run_hydra set HYDRA_FULL_ERROR=1 only for composing the config
    join_run_log()
    task_begins()
    try:
        return task()
    except Exception as raised:
        error = convlens_error_in(raised)  # Hydra's instantiate wraps errors raised while building
        if error is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            log_failure(f"error: {error or raised}", raised)
            raise
        from convlens.sweeps import multirun  # sweeps import this module: imported when needed

        if multirun.in_multirun():
            multirun.fail_this_job(error, raised)
            return None
        print_error(str(error), raised)
        sys.exit(1)


# What Hydra reads unquoted in an override's value; anything else (non-ASCII letters, brackets, commas, '=')
# needs Hydra's own quotes.
HYDRA_PLAIN_VALUE = re.compile(r"[\w\-+./:@~%]*", re.ASCII)


def shell_override(key: str, value: object) -> str:
    """``key=value`` as a user can paste it into a shell: quoted for Hydra where Hydra needs it, then for the shell."""
    text = str(value)
    if not HYDRA_PLAIN_VALUE.fullmatch(text):
        text = '"' + text.replace('"', '\\"') + '"'
    return shlex.quote(f"{key}={text}")


def hydra_error_line(error: HydraException) -> str:
    """Hydra's several-line report of a bad override, as one sentence naming the override and the fix."""
    if isinstance(error, MissingConfigException) and error.options is not None and error.missing_cfg_file:
        group, _, option = error.missing_cfg_file.rpartition("/")
        choices = ", ".join(f"{group}={name}" for name in error.options)
        return f"{group}={option} is not an option: there is no conf/{group}/{option}.yaml; choose {choices}"
    if isinstance(error, OverrideParseException):
        why = error.message.splitlines()[0]
        key, equals, value = error.override.partition("=")
        if equals and not re.fullmatch(r"[\[{].*", value) and not HYDRA_PLAIN_VALUE.fullmatch(value):
            return (
                f"cannot read the override {error.override!r} ({why}); a value with spaces, non-ASCII letters "
                f"or brackets needs Hydra's quotes inside the shell's: {shell_override(key, value)}"
            )
        return (
            f"cannot read the override {error.override!r} ({why}); write key=value, "
            "quoting lists and spaces for the shell: 'model.net.depth=[4,8]'"
        )
    cause = error.__cause__
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and cause.full_key and cause.parent_node is not None:
        known = [str(key) for key in cause.parent_node.keys()]
        close = difflib.get_close_matches(str(cause.key), known, n=1)
        prefix = cause.full_key.rpartition(".")[0]
        hint = (
            f"did you mean {prefix + '.' if prefix else ''}{close[0]}?"
            if close
            else f"the keys there are {', '.join(known)}"
        )
        return (
            f"{cause.full_key} is not a setting ({hint}); "
            f"fix its spelling, or write +{cause.full_key}=... to add a new key on purpose"
        )
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


def shown_config_error(error: InterpolationKeyError) -> str:
    """``--cfg hydra --resolve``: Hydra shows its own settings without the run's, which conf/hydra reads."""
    return (
        f"{str(error).splitlines()[0].rstrip('.')}: --cfg hydra leaves out the run's settings, which "
        "Hydra's own read (hydra.run.dir and hydra.sweep.dir: paths.log_dir; the SLURM launcher: "
        "trainer.*); resolve them with the rest: --cfg all --package hydra --resolve (or --package "
        "hydra.launcher)"
    )


def report_a_stopped_sweep(stop: BaseException) -> None:
    """Ctrl-C (or SIGTERM) that ends a sweep: its report and how to run the rest, then exit 128 + the signal."""
    from convlens.sweeps import interrupted  # sweeps import this module: imported when needed

    reported = interrupted.is_interrupt(stop) and interrupted.report_interrupted_sweep()
    if reported and isinstance(stop, KeyboardInterrupt):
        raise SystemExit(128 + signal.SIGINT) from stop  # the report said what happened; no second line


def run_hydra(main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` entry point; a mistyped override becomes one ``error:`` line and exit code 1.

    Hydra prints these itself, over several lines. To word them, Hydra is asked to raise instead
    (HYDRA_FULL_ERROR=1) while it composes the config; ``report_errors`` gives the user's setting back as the
    task starts, so what happens inside a run is reported as before, and HYDRA_FULL_ERROR=1 still shows the
    full traceback of either.
    """
    os.environ.setdefault(USER_FULL_ERROR, os.environ.get("HYDRA_FULL_ERROR", ""))
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except (ConfigCompositionException, OverrideParseException) as error:
        if USER_FULL_ERROR not in os.environ or os.environ[USER_FULL_ERROR] == "1":
            raise  # raised inside the run, or the user asked for the traceback
        print_error(hydra_error_line(error))
        sys.exit(1)
    except InterpolationKeyError as error:
        showing_config = any(arg.startswith(("--cfg", "-c")) for arg in sys.argv[1:])  # Hydra's -c/--cfg
        if not showing_config or os.environ.get(USER_FULL_ERROR) == "1":
            raise
        print_error(shown_config_error(error))
        sys.exit(1)
    except InterpolationResolutionError as error:  # e.g. run_name=a/b, read by Hydra for the run folder's name
        wrapped = convlens_error_in(error)
        if wrapped is None or os.environ.get(USER_FULL_ERROR) == "1":
            raise
        print_error(str(wrapped))
        sys.exit(1)
    except (KeyboardInterrupt, SystemExit) as stop:
        report_a_stopped_sweep(stop)
        raise
    finally:
        restore_user_full_error()
