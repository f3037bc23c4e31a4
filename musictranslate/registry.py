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
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

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
from .manifest import LOW_LATENCY, REINSTALL
from .model import ConfusionNet, Decoder, Encoder
from .names import inside
from .safe_write import claim_folder, write_atomically, write_folder_atomically, write_text

KEPT = "the previous version is kept"


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


def _save_weights(module: torch.nn.Module, path: Path) -> str:
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    write_atomically(path, lambda temp: save_file(state, temp), replace=True, kept=KEPT)
    return sha256_file(path)


def _write_manifest(
    folder: Path, manifest: dict, previous: Path | None = None, keep_evaluation: bool = False
) -> None:
    """Write the manifest, and the model card (README.md) rendered from it so the two agree,
    keeping the hand-written history of the card it replaces (``previous``, else the folder's),
    and its scores too with ``keep_evaluation`` (when the weights they measured are unchanged)."""
    from .model_card import history_of, render_model_card

    text = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
    write_text(folder / MANIFEST, text, kept=KEPT)
    try:
        history = history_of((previous or folder / CARD).read_text(), keep_evaluation)
    except (OSError, UnicodeDecodeError):
        history = ""  # no card yet, or an unreadable one: nothing to keep
    write_text(folder / CARD, render_model_card(manifest, history), kept=KEPT)


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
    path = inside(folder, entry["file"])
    if path is None:  # read_manifest refused it already; a link changed since is refused here
        raise ModelError(
            f"{folder / entry['file']}: {what} weights lie outside the model folder; {REINSTALL}"
        )
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
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    models_dir: str | os.PathLike | None = None,
    *,
    low_latency: bool = False,
) -> Model:
    """Load a model by registry name or folder path; the encoder is verified and loaded now.

    ``low_latency``: with the model's causal encoder (``distill.py``) in place of the shipped
    one, for live use; the decoders are the same."""
    folder = find_model(name_or_path, models_dir)
    manifest = read_manifest(folder)
    try:
        config = ModelConfig.from_dict(manifest["architecture"])
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"{folder / MANIFEST}: bad architecture ({exc}); upgrade musictranslate or re-install the model"
        ) from None
    name = manifest.get("name", folder.name)
    if low_latency and LOW_LATENCY not in manifest:
        raise ModelError(
            f"model {name!r} has no low-latency encoder; make one with "
            f"`musictranslate distill DATA --model {name}`, or leave out --low-latency"
        )
    encoder = Encoder(config, causal=low_latency)
    entry = manifest[LOW_LATENCY] if low_latency else manifest["encoder"]
    _load_weights(encoder, folder, entry, "low-latency encoder" if low_latency else "encoder")
    return Model(name, folder, config, manifest, encoder.eval())


def save_model(
    folder: str | os.PathLike,
    config: ModelConfig,
    encoder: Encoder,
    confusion: ConfusionNet,
    decoders: dict[str, Decoder],
    provenance: dict | None = None,
    *,
    replace: bool = False,
) -> Path:
    """Write a complete model folder; with ``replace``, an existing model is replaced once the new
    one is whole. Nothing but a model folder is ever replaced (``safe_write.claim_folder``)."""
    folder = Path(folder)
    claim_model_folder(folder, replace=replace)

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

    return write_folder_atomically(folder, fill, replace=replace)


def is_model_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a model this tool wrote: a manifest with a format version, even
    one too broken to load (replacing it is how a user repairs it)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(manifest, dict) and "format_version" in manifest


def claim_model_folder(folder: Path, replace: bool, ask: str = "pass --force to replace it") -> bool:
    """Refuse, before any work, to write a model over anything but a model (and that only with
    ``replace``); True when ``folder`` holds a model now."""
    return claim_folder(folder, is_model_folder, "model", replace=replace, ask=ask)


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


def set_low_latency_encoder(model: Model, encoder: Encoder, provenance: dict) -> None:
    """Write (or replace) ``model``'s causal encoder and its manifest entry; nothing else changes."""
    file = "encoder-low-latency.safetensors"
    entry = {"file": file, "sha256": _save_weights(encoder, model.path / file), "provenance": provenance}
    model.manifest[LOW_LATENCY] = entry
    _write_manifest(model.path, model.manifest, keep_evaluation=True)


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

    write_folder_atomically(target, fill, replace=False)
    return load_model(target)
