"""What a model manifest must hold before any of it is used: types, sizes, names and paths.

A manifest is a file anyone can edit or damage, and a model folder may come from anywhere, so
each entry is checked once when the manifest is read: a wrong type, a missing ``sha256``, a size
of zero, a domain name that is a path, a weight file outside the folder. Each problem is a
``ModelError`` that starts with "broken model:", names the manifest and says what to do, instead
of a ``KeyError`` or ``ZeroDivisionError`` at some later line.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from .config import ModelConfig
from .errors import ModelError
from .names import DOMAIN_RULE, inside, is_domain_name

REINSTALL = "re-install or re-train the model"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def broken(path: Path, problem: str) -> ModelError:
    return ModelError(f"broken model: {path}: {problem}; {REINSTALL}")


def _check_weights(entry: object, where: str, folder: Path, path: Path) -> None:
    if not isinstance(entry, dict):
        raise broken(path, f"{where} is not an object with 'file' and 'sha256'")
    for key in ("file", "sha256"):
        if not isinstance(entry.get(key), str):
            raise broken(path, f"{where} lacks a {key!r} text")
    if inside(folder, entry["file"]) is None:
        raise broken(path, f"{where} file {entry['file']!r} is not a path inside the model folder")
    if not _SHA256.fullmatch(entry["sha256"]):
        raise broken(path, f"{where} sha256 {entry['sha256'][:80]!r} is not 64 hex digits")


def _check_domains(names: object, where: str, path: Path) -> None:
    if not isinstance(names, list | dict) or not names:
        raise broken(path, f"{where} names no domain")
    for name in names:
        if not is_domain_name(name):
            raise broken(
                path, f"{where} has domain {str(name)[:80]!r}, which is not a domain name ({DOMAIN_RULE})"
            )


LOW_LATENCY = "low_latency_encoder"
"""The manifest entry of a model's optional causal encoder (``live --low-latency``)."""


def check_manifest(manifest: dict, folder: Path) -> None:
    """Raise a "broken model" ``ModelError`` for the first entry of ``manifest`` that cannot work."""
    path = folder / "manifest.json"
    architecture = manifest["architecture"]
    if not isinstance(architecture, dict):
        raise broken(path, "'architecture' is not an object")
    sizes = {f.name for f in fields(ModelConfig)}
    for key, value in architecture.items():
        if key in sizes and (type(value) is not int or value < 1):
            raise broken(path, f"architecture {key!r} is {str(value)[:40]}, not a whole number of at least 1")
    if "name" in manifest and not isinstance(manifest["name"], str):
        raise broken(path, "'name' is not a text")
    _check_weights(manifest["encoder"], "encoder", folder, path)
    _check_weights(manifest["confusion"], "confusion", folder, path)
    if LOW_LATENCY in manifest:
        _check_weights(manifest[LOW_LATENCY], "low-latency encoder", folder, path)
    _check_domains(manifest["confusion"].get("domains"), "confusion", path)
    decoders = manifest["decoders"]
    if not isinstance(decoders, dict):
        raise broken(path, "'decoders' is not an object of domain: weights")
    _check_domains(decoders, "decoders", path)
    for domain, entry in decoders.items():
        _check_weights(entry, f"decoder {domain!r}", folder, path)
    if not isinstance(manifest.get("training", {}), dict):
        raise broken(path, "'training' is not an object")
