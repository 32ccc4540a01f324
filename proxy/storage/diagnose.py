"""Why a SQLite database cannot be opened, in one line an operator can act on: the
``storage.path``, SQLite's error, and the OS error under it (``strerror`` and the
errno name), found by opening the files as SQLite does (SQLite's error does not carry
it). ``callgate check`` asks :func:`storage_problem` before anything is created."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from pathlib import Path

from ..errors import StoreUnavailable

__all__ = ["file_identity", "moved", "storage_problem", "unavailable"]


def unavailable(path: str, e: BaseException, readonly: bool = False) -> StoreUnavailable:
    """One line naming ``storage.path`` and the OS error under ``e`` (``strerror`` and
    the errno name): ``unable to open database file (storage.path=/x/y.db): Permission
    denied (EACCES)``. SQLite's own error does not carry the OS error, so the file (and
    its ``-wal``, ``-shm``) is opened as SQLite opens it, to ask the OS (:func:`_os_error`)."""
    headline = "cannot open the database"
    cause: OSError | None = e if isinstance(e, OSError) else None
    if isinstance(e, sqlite3.Error):
        headline = str(e)
        cause = _os_error(path, readonly)
    where = f"{headline} (storage.path={path})"
    if cause is None:
        name = getattr(e, "sqlite_errorname", None)
        return StoreUnavailable(f"{where}" + (f": {name}" if name else ""))
    if isinstance(cause, FileExistsError | NotADirectoryError) and cause.filename:
        return StoreUnavailable(f"{where}: {_folder_in_the_way(str(cause.filename))} is a file, not a folder (ENOTDIR)")
    reason = f"{cause.strerror or cause} ({errno.errorcode.get(cause.errno or 0, cause.errno)})"
    other = cause.filename is not None and str(cause.filename) != path
    return StoreUnavailable(f"{where}: {cause.filename}: {reason}" if other else f"{where}: {reason}")


def _folder_in_the_way(name: str) -> str:
    """The first part of ``name`` that exists and is not a folder (``name`` itself when none)."""
    for parent in reversed(Path(name).absolute().parents):
        if parent.exists() and not parent.is_dir():
            return str(parent)
    return name


def _os_error(path: str, readonly: bool) -> OSError | None:
    """What the OS answers to opening ``path`` as SQLite does (read-write, created when
    missing; read-only with ``readonly``), then its ``-wal`` and ``-shm`` beside it;
    ``None`` when every open works. A file made by the probe is removed again."""
    targets = (path,) if readonly else (path, path + "-wal", path + "-shm")
    for target in targets:
        existed = os.path.lexists(target)
        try:
            fd = os.open(target, os.O_RDONLY if readonly else os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            return e
        os.close(fd)
        if not existed:
            with contextlib.suppress(OSError):
                os.unlink(target)
    return None


def storage_problem(path: str) -> str | None:
    """Why a SQLite database at ``path`` could not be opened for writing, or ``None``
    (nothing is created: for ``callgate check``)."""
    target = Path(path).absolute()
    if target.exists():
        return None if os.access(target, os.W_OK) else f"{target} is not writable"
    folder = target.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    return None if os.access(folder, os.W_OK) else f"{folder} is not writable"


def file_identity(path: str) -> tuple[int, int] | None:
    """``(device, inode)`` of the file at ``path`` now (``None``: there is none)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def moved(path: str, opened: tuple[int, int] | None) -> str | None:
    """Why the database file a server opened (``opened``: its :func:`file_identity`
    then) is no longer at ``path``, or ``None``: removed, or replaced by another file.
    Either way the server's writes go where no later process will read them."""
    try:
        st = os.stat(path)
    except OSError as e:
        return f"the database file is gone (storage.path={path}): {e.strerror} ({errno.errorcode.get(e.errno or 0, e.errno)})"
    if opened is not None and (st.st_dev, st.st_ino) != opened:
        return f"the database file was replaced while serving (storage.path={path}): restart to use it"
    return None
