"""Where a search keeps its Optuna study: a storage URL, opened the same way by the sweeper and by every job.

- ``sqlite:///<file>``: one machine (the default, ``<sweep dir>/optuna.db``).
- ``journal:///<file>``: Optuna's journal file, appended to under a file lock; for a filesystem that several
  machines share (NFS), where sqlite's locking is unreliable.
- ``postgresql://...``, ``mysql://...`` (any SQLAlchemy URL of those, with its driver installed): a database
  server, for clusters.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection

from convlens.errors import ConvlensError

JOURNAL = "journal://"  # journal:///abs/path or journal://relative/path
DATABASES = ("sqlite", "postgresql", "mysql")
SQLITE_WAIT_SECONDS = 60  # a writer waits this long for another's lock: jobs and sweepers share the file


def storage_file(url: str) -> Path | None:
    """The local file behind a sqlite or journal URL (None for a database server)."""
    if url.startswith(JOURNAL):
        return Path(url[len(JOURNAL) :])
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return None


def refuse_a_read_only_file(url: str, path: Path) -> None:
    """A storage file that no one may write is protected on purpose, even from root (who could write it anyway)."""
    target = path if path.exists() else path.parent
    read_only = not os.access(target, os.W_OK) or not stat.S_IMODE(target.stat().st_mode) & 0o222
    if target.exists() and read_only:
        raise ConvlensError(
            f"hydra.sweeper.storage={url}: {target} is read-only, so the study cannot record "
            "trials; make it writable (chmod u+w) or pass another hydra.sweeper.storage"
        )


def open_storage(url: str) -> BaseStorage:
    """The storage behind ``url``; a URL that names no storage convlens knows is refused in one line."""
    scheme = url.partition(":")[0].partition("+")[0]
    if not url.startswith(JOURNAL) and (scheme not in DATABASES or "://" not in url):
        raise ConvlensError(
            f"hydra.sweeper.storage={url} is not a storage URL; use sqlite:///<file>, "
            "journal:///<file>, postgresql://<user>@<host>/<db> or mysql://<user>@<host>/<db>"
        )
    path = storage_file(url)
    if path is not None:
        refuse_a_read_only_file(url, path)
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if url.startswith(JOURNAL):
            return JournalStorage(JournalFileBackend(str(path)))
        engine = {"connect_args": {"timeout": SQLITE_WAIT_SECONDS}} if scheme == "sqlite" else {}
        return RDBStorage(url, engine_kwargs=engine)
    except Exception as error:  # SQLAlchemy's and the drivers' errors have no common base
        why = str(error).splitlines()[0]
        raise ConvlensError(
            f"hydra.sweeper.storage={url} cannot be opened ({why}); check the URL, and that its "
            "database driver is installed"
        ) from error


def open_study(url: str, name: str, direction: str, **kwargs) -> optuna.Study:
    """The study ``name`` in ``url``, made if new; an existing one must optimise in the same direction."""
    if direction not in ("minimize", "maximize"):
        raise ConvlensError(f"hydra.sweeper.direction={direction} is not a direction; use maximize or minimize")
    study = optuna.create_study(
        study_name=name,
        storage=open_storage(url),
        direction=StudyDirection[direction.upper()],
        load_if_exists=True,
        **kwargs,
    )
    if study.direction.name.lower() != direction:
        raise ConvlensError(
            f"the study {name} in {url} already exists and {study.direction.name.lower()}s, but "
            f"hydra.sweeper.direction={direction}; pass the study's direction or another "
            "hydra.sweeper.study_name"
        )
    return study
