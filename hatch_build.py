"""Hatch build hook: ship the default model inside the wheel, so it works offline from any folder.

The trained model lives in ``models/default`` (not inside the package, so a checkout trains and
commits it in place). A plain ``force-include`` would fail the build whenever that folder is
missing -- a fresh clone before training, or a CI run -- and would copy anything lying beside the
weights (resume checkpoints, logs). So this hook copies exactly the files the manifest names, as
``musictranslate/_models/default/``, after checking every sha256 so a half-written model never
ships; without a model it builds a wheel without one and says so.

``MUSICTRANSLATE_SHIP_MODEL=DIR`` ships another model folder as ``default`` (the wheel test uses a
tiny one while no trained default exists).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SHIPPED_AS = "musictranslate/_models/default"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_files(folder: Path) -> list[str]:
    """The manifest, the model card and every weight file listed (the low-latency encoder of
    ``live --low-latency`` too, where the model has one), each checked against its sha256."""
    manifest = json.loads((folder / "manifest.json").read_text())
    entries = [manifest["encoder"], manifest["confusion"], *manifest["decoders"].values()]
    entries += [manifest["low_latency_encoder"]] if "low_latency_encoder" in manifest else []
    for entry in entries:
        path = folder / entry["file"]
        if not path.is_file() or _sha256(path) != entry["sha256"]:
            raise RuntimeError(f"{path}: missing or does not match its sha256 in the manifest; not shipping")
    card = ["README.md"] if (folder / "README.md").is_file() else []
    return ["manifest.json", *card, *(entry["file"] for entry in entries)]


class ShipDefaultModel(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return  # an editable install finds the checkout's models/ itself
        folder = Path(os.environ.get("MUSICTRANSLATE_SHIP_MODEL") or Path(self.root) / "models" / "default")
        if not (folder / "manifest.json").is_file():
            self.app.display_warning(f"no model at {folder}: building a wheel without a default model")
            return
        for name in model_files(folder):
            build_data["force_include"][str(folder / name)] = f"{SHIPPED_AS}/{name}"
        self.app.display_info(f"shipping {folder} as {SHIPPED_AS}")
