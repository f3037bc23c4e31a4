"""One rule for domain names and for the files a model names, checked wherever they enter.

A domain name becomes part of file names -- ``decoders/<domain>.safetensors`` inside a model,
``<stem>_<domain>.wav`` beside an input -- so a name holding a separator or ``..`` would reach
outside its folder, and a manifest's ``file`` entry could point anywhere on the disk. Names come
from a model's manifest, ``--to``, ``add-domain --name`` and training-data folder names; all of
them pass through ``is_domain_name``, and every weight file through ``inside``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MAX_DOMAIN_LENGTH = 64
_DOMAIN = re.compile(rf"\w[\w.-]{{0,{MAX_DOMAIN_LENGTH - 1}}}")
DOMAIN_RULE = (
    f"a domain name is one word of letters, digits, '_', '-' or '.' (at most {MAX_DOMAIN_LENGTH}), "
    "starting with a letter or digit"
)


def is_domain_name(name: object) -> bool:
    """Whether ``name`` is a plain word that can be a file name's part in any folder."""
    return isinstance(name, str) and _DOMAIN.fullmatch(name) is not None


def inside(folder: Path, relative: object) -> Path | None:
    """``folder / relative`` when it is a relative path that stays inside ``folder`` (symlinks
    resolved), else None: an absolute path, ``..`` or a link out of the folder."""
    if not isinstance(relative, str) or not relative or os.path.isabs(relative):
        return None
    try:
        root = folder.resolve()
        path = (root / relative).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    return path if path != root and path.is_relative_to(root) else None
