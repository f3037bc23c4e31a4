"""The one folder scan: every command that takes a folder of audio finds its files here.

One rule everywhere: audio extensions only, hidden files and folders skipped (``.git``, macOS
``._take.wav`` resource forks, our own ``.mt-*.part`` temp files), symlinked folders followed
but each real folder visited once, so a link back up the tree cannot loop. A file link that
loops is listed like any file, to fail alone with a message when it is read.
"""

from __future__ import annotations

import os
from pathlib import Path

from .audio import AUDIO_EXTENSIONS


def real_path(path: str | os.PathLike) -> Path:
    """``path`` with every symlink resolved as far as they go; never raises on a link loop
    (``Path.resolve`` does on Python 3.11)."""
    return Path(os.path.realpath(path))


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def subfolders(root: Path) -> list[Path]:
    """The folders directly inside ``root`` that are not hidden, sorted by name (domain folders)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))


def audio_files(folder: str | os.PathLike, skip: Path | None = None) -> list[Path]:
    """Audio files below ``folder`` sorted by their path below it; ``skip``'s subtree (a real
    path: the output folder inside an input folder) left out."""
    folder = Path(folder)
    seen: set[tuple[int, int]] = set()
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        try:
            info = os.stat(root)
        except OSError:  # vanished or unreadable meanwhile
            dirs[:] = []
            continue
        if (info.st_dev, info.st_ino) in seen or (skip is not None and real_path(root).is_relative_to(skip)):
            dirs[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        dirs[:] = [d for d in dirs if not is_hidden(d)]
        found += [
            Path(root) / name
            for name in files
            if not is_hidden(name) and Path(name).suffix.lower() in AUDIO_EXTENSIONS
        ]
    return sorted(found, key=lambda p: p.relative_to(folder).parts)
