"""Model folders on disk: manifest, safetensors weights, sha256 checks, listing, adding decoders.

A model is a folder holding ``manifest.json``, ``encoder.safetensors``, ``confusion.safetensors``
and ``decoders/<domain>.safetensors``. The manifest carries the architecture, so any folder loads
without code edits, and the sha256 of every weight file, so tampering or truncation is caught
before a single weight is used. Nothing here ever unpickles.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .audio import usual_mode, write_failure
from .catalog import (
    CARD,
    CLASSIFIER_FILES,
    DEFAULT_MODEL,
    FORMAT_VERSION,
    MANIFEST,
    default_output_root,
    find_model,
    read_manifest,
)
from .config import MU, SAMPLE_RATE, ModelConfig
from .errors import DomainError, ModelError, OutputError, first_line
from .model import ConfusionNet, Decoder, Encoder


def recorded_path(path: str | os.PathLike) -> str:
    """How a manifest names the data a model was trained on: relative to the current folder when
    the data lies under it (``data/train`` in a checkout), else only the folder's name.

    Why: manifests and cards are committed and shipped; an absolute path names the machine that
    trained the model, which means nothing to anyone else and leaks its layout.
    """
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return resolved.name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write_bytes(path: Path, write) -> None:
    """Run ``write(temp_path)`` then rename over ``path``: readers never see half a file.

    A full disk or a read-only folder leaves the previous ``path`` as it was and is reported as
    an ``OutputError`` naming the file, not as a traceback.
    """
    temp = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        write(temp)
        os.chmod(temp, usual_mode())  # after writing: a writer may replace the file it was given
        os.replace(temp, path)
    except OSError as exc:
        raise OutputError(f"{write_failure(path, exc)}; the previous version is kept") from None
    finally:
        if temp and os.path.exists(temp):
            os.unlink(temp)


def _save_weights(module: torch.nn.Module, path: Path) -> str:
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    _atomic_write_bytes(path, lambda temp: save_file(state, temp))
    return sha256_file(path)


def _write_manifest(folder: Path, manifest: dict, previous: Path | None = None) -> None:
    """Write the manifest, and the model card (README.md) rendered from it so the two agree,
    keeping the hand-written history of the card it replaces (``previous``, else the folder's)."""
    from .model_card import history_of, render_model_card

    text = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
    _atomic_write_bytes(folder / MANIFEST, lambda temp: Path(temp).write_text(text))
    try:
        history = history_of((previous or folder / CARD).read_text())
    except (OSError, UnicodeDecodeError):
        history = ""  # no card yet, or an unreadable one: nothing to keep
    card = render_model_card(manifest, history)
    _atomic_write_bytes(folder / CARD, lambda temp: Path(temp).write_text(card))


REINSTALL = "re-install or re-train the model"


def _check_shapes(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """Name the first tensor that disagrees with the manifest's architecture.

    ``load_state_dict`` would say only "Error(s) in loading state_dict" on its first line.
    """
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise ModelError(
                f"{path}: {what} weights lack {key!r} that the manifest's architecture needs; {REINSTALL}"
            )
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ModelError(
                f"{path}: {what} tensor {key!r} has shape {tuple(state[key].shape)} but the manifest's "
                f"architecture needs {tuple(tensor.shape)} (weights from another model?); {REINSTALL}"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ModelError(
            f"{path}: {what} weights hold {extra[0]!r}, unknown to the manifest's architecture; {REINSTALL}"
        )


def _load_weights(module: torch.nn.Module, folder: Path, entry: dict, what: str) -> None:
    """Check the file's sha256 against the manifest, then load it strictly (shapes must agree).

    Only safetensors are read: a weight file is data, never code, whoever wrote it.
    """
    path = folder / entry["file"]
    if not path.is_file():
        raise ModelError(f"{path}: {what} weights are missing; {REINSTALL}")
    if sha256_file(path) != entry["sha256"]:
        raise ModelError(f"{path}: sha256 does not match the manifest (file changed or corrupt); {REINSTALL}")
    try:
        state = load_file(path)
    except (SafetensorError, OSError) as exc:
        raise ModelError(
            f"{path}: {what} weights are not a readable safetensors file, truncated or corrupt "
            f"({first_line(exc)[:200]}); {REINSTALL}"
        ) from None
    _check_shapes(module, state, path, what)
    module.load_state_dict(state, strict=True)


@dataclass
class Model:
    """A loaded model: the shared encoder, the confusion net and lazily loaded decoders."""

    name: str
    path: Path
    config: ModelConfig
    manifest: dict
    encoder: Encoder
    _decoders: dict[str, Decoder] = field(default_factory=dict, repr=False)

    @property
    def domains(self) -> list[str]:
        return list(self.manifest["decoders"])

    @property
    def input_level_db(self) -> float | None:
        """The level of the audio it was trained on (gated RMS, dBFS), where training recorded it;
        inputs are brought to it before encoding (``input_fit``)."""
        level = self.manifest.get("training", {}).get("input_level_db")
        return float(level) if isinstance(level, (int, float)) else None

    def check_domain(self, domain: str) -> None:
        if domain not in self.manifest["decoders"]:
            known = ", ".join(self.domains) or "none"
            raise DomainError(f"unknown domain {domain!r} for model {self.name!r}; known: {known}")

    def decoder(self, domain: str) -> Decoder:
        """The decoder for ``domain``, loaded and verified on first use."""
        self.check_domain(domain)
        if domain not in self._decoders:
            decoder = Decoder(self.config)
            _load_weights(decoder, self.path, self.manifest["decoders"][domain], f"decoder {domain!r}")
            self._decoders[domain] = decoder.eval()
        return self._decoders[domain]

    def confusion(self) -> ConfusionNet:
        entry = self.manifest["confusion"]
        net = ConfusionNet(self.config, len(entry["domains"]))
        _load_weights(net, self.path, entry, "confusion")
        return net.eval()


def load_model(
    name_or_path: str | os.PathLike = DEFAULT_MODEL, models_dir: str | os.PathLike | None = None
) -> Model:
    """Load a model by registry name or folder path; the encoder is verified and loaded now."""
    folder = find_model(name_or_path, models_dir)
    manifest = read_manifest(folder)
    try:
        config = ModelConfig.from_dict(manifest["architecture"])
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"{folder / MANIFEST}: bad architecture ({exc}); upgrade musictranslate or re-install the model"
        ) from None
    encoder = Encoder(config)
    _load_weights(encoder, folder, manifest["encoder"], "encoder")
    return Model(manifest.get("name", folder.name), folder, config, manifest, encoder.eval())


def save_model(
    folder: str | os.PathLike,
    config: ModelConfig,
    encoder: Encoder,
    confusion: ConfusionNet,
    decoders: dict[str, Decoder],
    provenance: dict | None = None,
) -> Path:
    """Write a complete model folder, replacing any existing one only once the new one is whole."""
    folder = Path(folder)

    def fill(staging: Path) -> None:
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": folder.name,
            "sample_rate": SAMPLE_RATE,
            "mu": MU,
            "architecture": config.to_dict(),
            "encoder": {"file": "encoder.safetensors"},
            "confusion": {"file": "confusion.safetensors", "domains": list(decoders)},
            "decoders": {},
            "training": provenance or {},
        }
        manifest["encoder"]["sha256"] = _save_weights(encoder, staging / "encoder.safetensors")
        manifest["confusion"]["sha256"] = _save_weights(confusion, staging / "confusion.safetensors")
        for domain, decoder in decoders.items():
            file = f"decoders/{domain}.safetensors"
            manifest["decoders"][domain] = {"file": file, "sha256": _save_weights(decoder, staging / file)}
        _write_manifest(staging, manifest, previous=folder / CARD)
        _keep_classifier(folder, staging, set(decoders))

    return write_folder_atomically(folder, fill)


def _keep_classifier(folder: Path, staging: Path, domains: set[str]) -> None:
    """Carry the domain classifier over a re-save while the model still has all its domains.

    Why: it was trained on real renders, not on the model's weights, so training the model further
    (which re-saves the folder at every checkpoint) does not make it stale.
    """
    weights, meta = (folder / name for name in CLASSIFIER_FILES)
    try:
        if not set(json.loads(meta.read_text())["domains"]) <= domains:
            return
        for file in (weights, meta):
            shutil.copy2(file, staging / file.name)
    except (OSError, ValueError, KeyError, TypeError):
        return  # none, or unreadable: `evaluate classifier` trains a new one


def write_folder_atomically(folder: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Build a folder's new contents in a staging folder, then swap it in.

    A process killed at any moment leaves either the old folder or the new one under ``folder``
    (at worst the old one renamed to ``.<name>.old`` for the instant between two renames, which
    ``restore_interrupted`` puts back). A failed write (full disk) keeps the old folder and is
    reported as an ``OutputError``.
    """
    folder = Path(folder)
    staging: Path | None = None
    try:
        restore_interrupted(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        staging.chmod(usual_mode(folder=True))
        fill(staging)
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


def refined_decoders(manifest: dict) -> dict[str, dict]:
    """Domain -> provenance of each decoder that ``add-domain --refine`` trained on its own."""
    return {
        domain: entry["provenance"]
        for domain, entry in manifest["decoders"].items()
        if entry.get("provenance", {}).get("refined")
    }


def add_decoder(model: Model, domain: str, decoder: Decoder, provenance: dict | None = None) -> None:
    """Add one decoder file and one manifest entry; nothing else in the folder changes."""
    file = f"decoders/{domain}.safetensors"
    entry = {"file": file, "sha256": _save_weights(decoder, model.path / file)}
    if provenance:
        entry["provenance"] = provenance
    model.manifest["decoders"][domain] = entry
    _write_manifest(model.path, model.manifest)
    model._decoders[domain] = decoder.eval()


def writable_model(model: Model, models_dir: str | os.PathLike | None = None) -> Model:
    """``model`` itself, or -- when it is the copy shipped inside the package, which an upgrade
    replaces and which may be read-only -- a copy in the first registry folder a user controls."""
    shipped = Path(__file__).resolve().parent / "_models"
    if shipped not in model.path.resolve().parents:
        return model
    target = default_output_root(models_dir) / model.path.name
    if target.exists():
        raise ModelError(f"{target}: already exists; pass --model {target} to extend that copy")
    return copy_model(model, target)


def copy_model(model: Model, target: Path) -> Model:
    """A copy of ``model``'s folder at ``target`` (written whole or not at all) named after it, loaded."""
    if target.exists():
        raise OutputError(f"{target}: already exists; choose another name or folder")

    def fill(staging: Path) -> None:
        shutil.copytree(model.path, staging, dirs_exist_ok=True)
        _write_manifest(staging, {**model.manifest, "name": target.name})

    write_folder_atomically(target, fill)
    return load_model(target)
