"""A training run's resume state: weights, optimiser state, step and options, beside the model.

``models/NAME.train/checkpoint`` holds ``state.safetensors`` (tensors) and ``state.json`` (the
rest), swapped in whole (``write_folder_atomically``), so a run killed at any moment resumes from
the last complete checkpoint. Nothing in a checkpoint is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import TrainingError, first_line
from .registry import write_folder_atomically

if TYPE_CHECKING:
    from .train_step import Trainer

CHECKPOINT_FORMAT = 1


def run_folder(model_folder: Path) -> Path:
    """Where a model's resume state and log live: beside it, never inside the shipped model."""
    return model_folder.with_name(model_folder.name + ".train")


def save_checkpoint(run: Path, trainer: Trainer, meta: dict) -> None:
    tensors, groups = trainer.state()

    def fill(staging: Path) -> None:
        save_file(tensors, staging / "state.safetensors")
        (staging / "state.json").write_text(json.dumps(meta | {"optimizer_groups": groups}, indent=1))

    write_folder_atomically(run / "checkpoint", fill)


CHECKPOINT_KEYS = ("step", "architecture", "domains", "options", "optimizer_groups")


def load_checkpoint(run: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Resume state from safetensors and JSON only: nothing in a checkpoint is ever unpickled."""
    folder = run / "checkpoint"
    start_over = f"delete {run} to start over, or train into another --output"
    if not (folder / "state.json").is_file():
        raise TrainingError(f"{folder}: no checkpoint to resume from; start without --resume")
    try:
        meta = json.loads((folder / "state.json").read_text())
        tensors = load_file(folder / "state.safetensors")
    except (OSError, ValueError, SafetensorError) as exc:
        raise TrainingError(
            f"{folder}: unreadable checkpoint, truncated or corrupt ({first_line(exc)}); {start_over}"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise TrainingError(f"{folder}: checkpoint format {found} is not supported; {start_over}")
    missing = [key for key in CHECKPOINT_KEYS if key not in meta]
    if missing:
        raise TrainingError(f"{folder}: checkpoint lacks {', '.join(missing)}; {start_over}")
    return tensors, meta
