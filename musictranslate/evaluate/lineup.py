"""The paper's lineup test: can listeners tell the autoencoded source among its translations?

For a source segment from a domain the model knows, the lineup holds its own-domain autoencoding
(``D_source(E(s))``) and its translation to every other domain: one clip per decoder. The clips
are written under neutral names in a shuffled order, and the answer key goes to a separate JSON,
so a listening test can be run straight from the folder.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import GenerationOptions, decode, encode, save_audio
from ..audio import check_audible
from ..errors import OutputError

if TYPE_CHECKING:
    from ..registry import Model

ANSWERS = "answers.json"


@dataclass(frozen=True)
class LineupClip:
    domain: str
    autoencoded: bool
    audio: np.ndarray


def lineup(
    model: Model,
    audio: np.ndarray,
    source_domain: str,
    options: GenerationOptions = GenerationOptions(),
    progress: Callable[[int, int], None] | None = None,
) -> list[LineupClip]:
    """One clip per decoder of ``model``, in the model's domain order; the source is encoded once."""
    model.check_domain(source_domain)
    check_audible(audio, "source", model.config.pool)
    latent = encode(audio, model=model)
    clips = []
    for i, domain in enumerate(model.domains):
        clips.append(
            LineupClip(
                domain,
                domain == source_domain,
                decode(latent, domain, model=model, length=len(audio), options=options),
            )
        )
        if progress is not None:
            progress(i + 1, len(model.domains))
    return clips


def write_lineup(
    clips: list[LineupClip], folder: Path, seed: int = 0, source: str = "", force: bool = False
) -> Path:
    """Write ``clip_1.wav`` ... shuffled by ``seed``, and the answer key; returns the key's path."""
    if not folder.is_dir():
        raise OutputError(f"{folder}: output folder does not exist; create it first")
    order = list(range(len(clips)))
    random.Random(seed).shuffle(order)
    names = [f"clip_{i + 1}.wav" for i in range(len(clips))]
    key = folder / ANSWERS
    if not force:
        for path in [key, *(folder / n for n in names)]:
            if path.exists():
                raise OutputError(f"{path}: already exists; pass --force to overwrite")
    answers = {}
    for name, index in zip(names, order, strict=True):
        save_audio(folder / name, clips[index].audio, force=force)
        answers[name] = {"domain": clips[index].domain, "autoencoded": clips[index].autoencoded}
    key.write_text(json.dumps({"source": source, "seed": seed, "clips": answers}, indent=2) + "\n")
    return key
