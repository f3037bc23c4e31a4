"""Every write the package makes to a user's disk: whole or not at all, and never over something
it was not asked to replace.

Files are written to a short hidden temp name beside the target and moved into place only when
whole, so a crash, a full disk or a signal leaves either the old file or the new one. Without
``replace`` the final name is created with a hard link, which fails when the name exists: two
runs writing one output cannot silently replace each other, whatever happens between the first
check and the last step. Folders (a model, a checkpoint) are built in a staging folder and
swapped in the same way. ``claim_folder`` decides, before any work, whether a folder may be
written at all: only when it is new, empty, or one this tool wrote (and then only when asked).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from .errors import OutputError

WRITE_HINT = "is the disk full or the folder read-only? Free some space or choose another output folder"


def usual_mode(folder: bool = False) -> int:
    """The permissions ``open``/``mkdir`` would give under the current umask.

    ``mkstemp`` and ``mkdtemp`` create private 0600/0700 entries; renamed into place as they are,
    every output and model would be unreadable to anyone but its writer.
    """
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if folder else 0o666) & ~mask


def write_failure(path: str | os.PathLike, exc: OSError) -> str:
    """One line for a failed write: the file, the system's reason, and what to do about it."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = "free some space or choose another output folder"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "choose a writable output folder"
    else:
        hint = WRITE_HINT
    return f"{path}: could not write ({exc.strerror or exc}); {hint}"


TEMP_PREFIX = ".mt-"
"""Temp names are ``.mt-XXXXXXXX.part``: hidden, so folder scans skip them, and short, so an
output name of up to 255 characters still leaves room for its temp file."""
TEMP_SUFFIX = ".part"


def exists_message(path: Path) -> str:
    return f"{path}: already exists; pass --force to overwrite"


def _create_new(temp: str, path: Path) -> None:
    """Give ``temp``'s content the name ``path`` only if no file has that name yet."""
    try:
        os.link(temp, path)
        return
    except FileExistsError:
        raise OutputError(exists_message(path)) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
    # a file system without hard links (FAT, some network shares): reserve the name exclusively
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, usual_mode()))
    except FileExistsError:
        raise OutputError(exists_message(path)) from None
    os.replace(temp, path)


def write_atomically(
    path: str | os.PathLike, write: Callable[[str], None], *, replace: bool, kept: str = ""
) -> Path:
    """Run ``write(temp_path)``, then give the result the name ``path``; return ``path``.

    ``replace`` allows an existing ``path`` to be replaced (``--force``); without it an existing
    name, even one that appeared while ``write`` ran, fails with "already exists". The temp file
    is removed on every way out, a signal's included. An ``OSError`` becomes an ``OutputError``
    naming ``path`` (``kept`` is appended, e.g. "the previous version is kept").
    """
    path = Path(path)
    temp = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
        write(temp)
        os.chmod(temp, usual_mode())  # after writing: a writer may replace the file it was given
        if replace:
            os.replace(temp, path)
        else:
            _create_new(temp, path)
    except OSError as exc:
        raise OutputError(write_failure(path, exc) + (f"; {kept}" if kept else "")) from None
    finally:
        if temp:
            with suppress(FileNotFoundError):
                os.unlink(temp)
    return path


def write_text(path: str | os.PathLike, text: str, *, replace: bool = True, kept: str = "") -> Path:
    """``write_atomically`` for a text file (UTF-8)."""
    return write_atomically(
        path, lambda temp: Path(temp).write_text(text, encoding="utf-8"), replace=replace, kept=kept
    )


def write_folder_atomically(
    folder: str | os.PathLike, fill: Callable[[Path], None], *, replace: bool = True
) -> Path:
    """Build a folder's new contents in a staging folder, then swap it in.

    A process killed at any moment leaves either the old folder or the new one under ``folder``
    (at worst the old one renamed to ``.<name>.old`` for the instant between two renames, which
    ``restore_interrupted`` puts back). A failed write (full disk) keeps the old folder and is
    reported as an ``OutputError``. Without ``replace`` a folder that appeared meanwhile with
    anything in it is left alone and the write fails with "already exists".
    """
    folder = Path(folder)
    staging: Path | None = None
    try:
        restore_interrupted(folder)
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"{folder}: is a file, not a folder; nothing was changed, choose another name")
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=folder.parent))
        staging.chmod(usual_mode(folder=True))
        fill(staging)
        if not replace:
            try:
                os.rename(staging, folder)  # only over a missing or empty folder
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                    raise OutputError(f"{folder}: already exists; pass --force to replace it") from None
                raise
            return folder
        old = folder.with_name(f".{folder.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if folder.exists():
            os.replace(folder, old)
        os.replace(staging, folder)
        if old.exists():
            shutil.rmtree(old)
    except OSError as exc:
        raise OutputError(f"{write_failure(folder, exc)}; the previous version is kept") from None
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging)
    return folder


def restore_interrupted(folder: str | os.PathLike) -> None:
    """Put back ``.<name>.old`` when a process died between the two renames that swap a folder.

    Without this, the next write would delete the only copy before its own is complete, and a
    resume would find no checkpoint.
    """
    folder = Path(folder)
    old = folder.with_name(f".{folder.name}.old")
    if old.is_dir() and not folder.exists():
        os.replace(old, folder)


def claim_folder(
    folder: str | os.PathLike, ours: Callable[[Path], bool], what: str, *, replace: bool, ask: str
) -> bool:
    """Check, before any work, that ``folder`` may be written; return whether it holds our work.

    Allowed: a missing or empty folder, or one that ``ours`` recognises as ``what`` this tool
    wrote, and then only with ``replace``. Anything else -- a file, a folder of recordings, the
    training data -- is refused with a one-line ``OutputError`` and left exactly as it was, even
    with ``--force``. ``ask`` says how to ask for the replacement (``pass --force ...``).
    """
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return False
    if not folder.is_dir():
        raise OutputError(f"{folder}: is a file, not a {what}; nothing was changed, choose another name")
    try:
        empty = next(folder.iterdir(), None) is None
    except OSError as exc:
        raise OutputError(
            f"{folder}: cannot be read ({exc.strerror or exc}); choose another folder"
        ) from None
    if empty:
        return False
    if not ours(folder):
        raise OutputError(
            f"{folder}: holds files that are not a {what} musictranslate wrote; nothing was changed, "
            "choose a new or empty folder"
        )
    if not replace:
        raise OutputError(f"{folder}: a {what} already exists there; {ask}")
    return True
