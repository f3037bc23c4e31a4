"""Where models live and what they hold, without loading torch.

The registry's search order, finding a model folder by name, reading and checking its manifest,
and listing every model: all that ``musictranslate models`` and ``--help`` need, so they answer
at once. Loading and saving weights is ``registry``'s job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import ModelError
from .manifest import check_manifest

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CARD = "README.md"
DEFAULT_MODEL = "default"
CLASSIFIER_FILES = ("classifier.safetensors", "classifier.json")
"""The independent domain classifier (``evaluate/classifier.py``), stored beside a model's files."""
ENV_VAR = "MUSICTRANSLATE_MODELS"


def user_models_root() -> Path:
    """The per-user registry folder (``~/.local/share/musictranslate/models`` on Linux)."""
    from platformdirs import user_data_path

    return user_data_path("musictranslate") / "models"


def registry_roots(models_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for a model name, first match wins.

    ``--models DIR``, then ``$MUSICTRANSLATE_MODELS``, then ``./models``, then the per-user data
    folder, then the models shipped with the package (the repo's ``models/`` in a checkout).
    """
    package = Path(__file__).resolve().parent
    # beside an installed package sits site-packages, whose stray ``models/`` is nobody's registry
    checkout = (package.parent / "pyproject.toml").is_file()
    roots = [
        Path(models_dir) if models_dir else None,
        Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else None,
        Path.cwd() / "models",
        user_models_root(),
        package / "_models",
        package.parent / "models" if checkout else None,
    ]
    unique: list[Path] = []
    for root in roots:
        if root is not None and root not in unique:
            unique.append(root)
    return unique


def default_output_root(models_dir: str | os.PathLike | None = None) -> Path:
    """Where a newly trained model goes when only a name is given: the first root a user controls.

    ``--models DIR``, else ``$MUSICTRANSLATE_MODELS``, else ``./models`` when that folder exists
    (a checkout, a project folder), else the per-user data folder -- all of them searched by
    ``load_model``, so ``musictranslate models`` lists the result from anywhere. Never the
    package's own ``_models``, which an upgrade replaces and which may be read-only.
    """
    if models_dir:
        return Path(models_dir)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    local = Path.cwd() / "models"
    return local if local.is_dir() else user_models_root()


def model_output_path(name_or_path: str | os.PathLike, models_dir: str | os.PathLike | None = None) -> Path:
    """``mine`` -> ``<default_output_root>/mine``; anything with a folder in it is used as given."""
    text = str(name_or_path)
    if os.sep in text or "/" in text:
        return Path(name_or_path)
    return default_output_root(models_dir) / text


def find_model(name_or_path: str | os.PathLike, models_dir: str | os.PathLike | None = None) -> Path:
    """A model folder from a path, or from a name looked up in ``registry_roots``."""
    candidate = Path(name_or_path)
    if (candidate / MANIFEST).is_file():
        return candidate
    name = str(name_or_path)
    available = ", ".join(sorted({m["name"] for m in list_models(models_dir)})) or "none"
    if os.sep in name or "/" in name:
        problem = "has no manifest.json" if candidate.is_dir() else "no such folder"
        raise ModelError(
            f"{candidate}: not a model folder ({problem}); give a model folder or a registry name "
            f"(available: {available})"
        )
    for root in registry_roots(models_dir):
        if (root / name / MANIFEST).is_file():
            return root / name
    raise ModelError(
        f"model {name!r} not found (searched {', '.join(str(r) for r in registry_roots(models_dir))}); "
        f"available: {available}"
    )


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable manifest ({exc}); re-install the model") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if not isinstance(version, int):
        raise ModelError(f"{path}: not a musictranslate manifest (no format_version)")
    if version > FORMAT_VERSION:
        raise ModelError(
            f"{path}: model format {version} is newer than this musictranslate supports "
            f"({FORMAT_VERSION}); upgrade musictranslate"
        )
    for key in ("architecture", "encoder", "confusion", "decoders"):
        if key not in manifest:
            raise ModelError(f"{path}: manifest lacks {key!r}; re-install the model")
    check_manifest(manifest, folder)
    return manifest


def list_models(models_dir: str | os.PathLike | None = None) -> list[dict]:
    """Every model in every registry root: name, path, domains (first root wins on a name)."""
    found: dict[str, dict] = {}
    for root in registry_roots(models_dir):
        if not root.is_dir():
            continue
        # hidden folders are staging copies of a write that was interrupted, not models
        for folder in sorted(
            p for p in root.iterdir() if not p.name.startswith(".") and (p / MANIFEST).is_file()
        ):
            if folder.name in found:
                continue
            try:
                manifest = read_manifest(folder)
                domains = list(manifest["decoders"])
                error = None
            except ModelError as exc:
                domains, error = [], str(exc)
            found[folder.name] = {
                "name": folder.name,
                "path": str(folder),
                "domains": domains,
                "error": error,
            }
    return list(found.values())
