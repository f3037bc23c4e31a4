"""Pairing files for the batch commands: every output with the input (or reference) it belongs to.

``musictranslate translate`` names an output ``<stem>_<domain>.<ext>`` and mirrors the input tree,
so an output belongs to the input in the same relative folder whose stem equals the output's stem
or prefixes it followed by ``_``. The longest such stem wins, so ``a_b.wav`` belongs to ``a_b``
when both ``a`` and ``a_b`` exist.
"""

from __future__ import annotations

from pathlib import Path

from ..scan import audio_files, subfolders
from . import EvaluationError


def pair_files(first: Path, second: Path) -> list[tuple[Path, Path]]:
    """``(input, output)`` pairs from two files or two folders (see the module docstring).

    Raises when the arguments mix a file and a folder or when folders give no pair at all, so a
    batch never "succeeds" having scored nothing.
    """
    if first.is_file() and second.is_file():
        return [(first, second)]
    for path in (first, second):
        if not path.exists():
            raise EvaluationError(f"{path}: no such file or folder")
    if not (first.is_dir() and second.is_dir()):
        raise EvaluationError(f"{first}, {second}: give two files or two folders, not one of each")
    by_key: dict[tuple[Path, str], Path] = {}
    for path in audio_files(first):
        by_key[(path.parent.relative_to(first), path.stem)] = path
    pairs = []
    for out in audio_files(second):
        folder, stem = out.parent.relative_to(second), out.stem
        candidates = [s for (f, s) in by_key if f == folder and (stem == s or stem.startswith(s + "_"))]
        if candidates:
            pairs.append((by_key[(folder, max(candidates, key=len))], out))
    if not pairs:
        raise EvaluationError(
            f"{second}: no file matches one in {first} (expected the same relative path, "
            "named <stem>.<ext> or <stem>_<domain>.<ext>)"
        )
    return pairs


def domain_folders(root: Path) -> list[Path]:
    """The domain subfolders of a data folder (hidden ones skipped), sorted by name."""
    if not root.is_dir():
        raise EvaluationError(f"{root}: not a folder; give a data folder with one subfolder per domain")
    return subfolders(root)


def parallel_pieces(root: Path) -> dict[str, dict[str, Path]]:
    """``{piece: {domain: file}}`` for a parallel test set laid out as ``root/<domain>/<piece>.<ext>``.

    A piece is a file's path relative to its domain folder without the extension, so the same
    score rendered for every domain gives one piece with one file per domain.
    """
    pieces: dict[str, dict[str, Path]] = {}
    for folder in domain_folders(root):
        for path in audio_files(folder):
            piece = path.relative_to(folder).with_suffix("").as_posix()
            pieces.setdefault(piece, {})[folder.name] = path
    if not pieces:
        raise EvaluationError(f"{root}: no audio found in its domain subfolders")
    return dict(sorted(pieces.items()))
