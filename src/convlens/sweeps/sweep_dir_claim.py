"""A sweep's claim on its folder, taken before any job starts and held while the sweep runs.

Two grids started at once into one ``hydra.sweep.dir`` would both number their jobs 0, 1, ... and write into
the same folders. So a sweep takes an ``flock`` on ``<sweep dir>/.sweep.lock`` (the kernel releases it when
the sweep's process ends, however it ends): a grid exclusively, a search shared, so several sweepers of one
study may work in one folder (their trials, hence their folders, have distinct numbers). ``.sweep.kind`` says
what the folder holds: ``grid``, or ``search <storage> <study>``; a search continues only its own study.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from convlens.errors import ConvlensError
from convlens.startup.run_task import shell_override

LOCK = ".sweep.lock"
KIND = ".sweep.kind"


def jobs_in(sweep_dir: Path) -> list[str]:
    return sorted(
        (path.parent.parent.name for path in sweep_dir.glob("*/.hydra/overrides.yaml")),
        key=lambda name: (len(name), name),
    )


def refuse_a_used_sweep_dir(sweep_dir: Path, search: str | None = None) -> None:
    """A grid numbers its jobs from 0 again, so in a sweep dir that has jobs it would overwrite their folders;
    a search may go on in its own folder (``search``: its kind line), not in another sweep's."""
    done = jobs_in(sweep_dir)
    kind_file = sweep_dir / KIND
    if not done or (search is not None and kind_file.is_file() and kind_file.read_text().strip() == search):
        return
    listed = f"{', '.join(done[:5])}{', ...' if len(done) > 5 else ''}"
    what = "an earlier sweep" if search is None else "another sweep or study"
    storage = None if search is None else shell_override("hydra.sweeper.storage", search.split()[1])
    hint = (
        "; to continue a search, run the same command with the same hydra.sweep.dir"
        if search is None
        else f" (the study stays in {storage})"
    )
    raise ConvlensError(
        f"hydra.sweep.dir={sweep_dir} already holds the jobs of {what} ({listed}), whose folders "
        f"a new sweep would overwrite; pass a new hydra.sweep.dir{hint}"
    )


def claim_sweep_dir(sweep_dir: Path, search: str | None) -> int:
    """Lock ``sweep_dir`` for this sweep; the open descriptor, to keep until the sweep ends.

    ``search``: ``"search <storage> <study>"`` for a search, None for a grid.
    """
    refuse_a_used_sweep_dir(sweep_dir, search)  # first, so that a refused sweep leaves nothing behind
    sweep_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(sweep_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, (fcntl.LOCK_EX if search is None else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        refuse_a_used_sweep_dir(sweep_dir, search)  # again: a sweep may have ended between the check and the lock
    except BlockingIOError:
        os.close(descriptor)
        raise ConvlensError(
            f"another sweep is running in hydra.sweep.dir={sweep_dir} (only the sweepers of one "
            "search may share a folder); wait for it to end or pass a new hydra.sweep.dir"
        ) from None
    except ConvlensError:
        os.close(descriptor)
        raise
    kind = sweep_dir / KIND
    if not kind.is_file():
        kind.write_text((search or "grid") + "\n")
    return descriptor
