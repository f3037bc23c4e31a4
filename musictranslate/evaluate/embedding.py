"""The paper's NSynth experiment: is the latent about the note rather than the instrument?

Single notes of several instruments across a range of pitches are rendered with FluidSynth (the
recipes' :func:`~musictranslate.recipes.render.render_note`), encoded, and averaged over their
sounding frames into one vector per (instrument, pitch). Cosine similarity between those vectors
gives, for every pair of instruments, a pitch x pitch matrix: *self* matrices (one instrument
against itself) show how the latent moves with pitch, *cross* matrices (two instruments) should
have a bright diagonal if the same note lands in the same place whatever plays it. The paper
reports 0.90-0.95 on the diagonal. A high diagonal only means something next to the
off-diagonal mean, so both are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .. import encode
from . import EvaluationError

if TYPE_CHECKING:
    from ..registry import Model

DEFAULT_INSTRUMENTS = ("piano", "harpsichord", "strings", "flute")
"""Used when the model's own domains name fewer than two General MIDI instruments."""

DEFAULT_PITCHES = tuple(range(48, 73, 2))
"""C3 to C5 in whole tones: the range every default instrument plays."""

NOTE_SECONDS, RELEASE_SECONDS = 1.0, 0.25
SOUNDING_DB = 30.0
"""Latent frames whose audio is this far below the note's loudest frame (release, silence) are
left out of the average: they describe the decay, not the note."""


def gm_program(instrument: str) -> tuple[str, int]:
    """``"flute"`` or ``"whistle=78"`` -> (name, General MIDI program 0-127)."""
    from ..recipes.render import GM_PROGRAMS

    name, _, program = instrument.partition("=")
    if program:
        if not program.isdigit() or not 0 <= int(program) <= 127:
            raise EvaluationError(f"{instrument!r}: the program after '=' must be 0-127")
        return name, int(program)
    if name not in GM_PROGRAMS:
        raise EvaluationError(
            f"unknown instrument {name!r}; use one of {', '.join(GM_PROGRAMS)} or NAME=PROGRAM"
        )
    return name, GM_PROGRAMS[name]


def default_instruments(model: Model) -> list[str]:
    """The model's domains that are General MIDI instruments, else :data:`DEFAULT_INSTRUMENTS`."""
    from ..recipes.render import GM_PROGRAMS

    known = [d for d in model.domains if d in GM_PROGRAMS]
    return known if len(known) >= 2 else list(DEFAULT_INSTRUMENTS)


def render_notes(instrument: str, pitches: Sequence[int], soundfont: str | None = None) -> list[np.ndarray]:
    """One raw render per pitch, each ``NOTE_SECONDS`` held plus ``RELEASE_SECONDS``."""
    from ..recipes.render import RenderError, render_note

    _, program = gm_program(instrument)
    try:
        return [
            render_note(program, p, seconds=NOTE_SECONDS, release=RELEASE_SECONDS, soundfont=soundfont)
            for p in pitches
        ]
    except RenderError as exc:
        raise EvaluationError(f"rendering {instrument} notes failed: {exc}") from None


def note_embedding(model: Model, audio: np.ndarray) -> np.ndarray:
    """The latent of one note averaged over its sounding frames, ``(latent_dim,)``."""
    if float(np.max(np.abs(audio), initial=0.0)) < 1e-4:
        raise EvaluationError("a rendered note is silent; is the pitch inside the instrument's range?")
    latent = encode(audio, model=model).float().numpy()
    pool = model.config.pool
    padded = np.pad(audio, (0, latent.shape[1] * pool - len(audio)))
    rms = np.sqrt(np.mean(padded.reshape(-1, pool).astype(np.float64) ** 2, axis=1))
    sounding = rms >= rms.max() * 10 ** (-SOUNDING_DB / 20)
    return latent[:, sounding].mean(axis=1)


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of ``a`` with every row of ``b``."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


@dataclass(frozen=True)
class EmbeddingStudy:
    """Note embeddings ``(instruments, pitches, latent_dim)`` and what they say."""

    instruments: list[str]
    pitches: list[int]
    embeddings: np.ndarray

    def similarity(self, i: int, j: int, centred: bool = False) -> np.ndarray:
        """Pitch x pitch cosine similarity of instrument ``i`` (rows) against ``j`` (columns).

        ``centred`` first subtracts the mean embedding of the whole study: an offset every note
        shares (a bias) makes all raw cosines near 1 and hides what differs between notes. A
        negative centred cross-instrument similarity means the instruments sit on opposite sides
        of that mean: the latent says more about the instrument than about the note.
        """
        shift = self.embeddings.mean(axis=(0, 1)) if centred else 0.0
        return cosine_matrix(self.embeddings[i] - shift, self.embeddings[j] - shift)

    def _statistics(self, centred: bool) -> dict:
        n, p = len(self.instruments), len(self.pitches)
        off = ~np.eye(p, dtype=bool)

        def off_mean(sim: np.ndarray) -> float | None:
            return float(np.mean(sim[off])) if p > 1 else None

        pairs = {}
        for i in range(n):
            for j in range(i + 1, n):
                sim = self.similarity(i, j, centred)
                pairs[f"{self.instruments[i]}/{self.instruments[j]}"] = {
                    "diagonal": float(np.mean(np.diag(sim))),
                    "off_diagonal": off_mean(sim),
                }
        diagonals = [v["diagonal"] for v in pairs.values()]
        off_diagonals = [v["off_diagonal"] for v in pairs.values() if v["off_diagonal"] is not None]
        return {
            "cross_diagonal_mean": float(np.mean(diagonals)) if diagonals else None,
            "cross_off_diagonal_mean": float(np.mean(off_diagonals)) if off_diagonals else None,
            "pairs": pairs,
            "self_off_diagonal": {
                name: off_mean(self.similarity(i, i, centred)) for i, name in enumerate(self.instruments)
            },
        }

    def summary(self) -> dict:
        """Mean diagonal (same pitch, two instruments: the paper's number) and off-diagonal
        (different pitches) similarity, over all cross-instrument matrices and per pair, from
        raw embeddings (as in the paper) and from centred ones."""
        return {
            "instruments": self.instruments,
            "pitches": self.pitches,
            "raw": self._statistics(centred=False),
            "centred": self._statistics(centred=True),
        }


def embedding_study(
    model: Model,
    instruments: Sequence[str] | None = None,
    pitches: Sequence[int] = DEFAULT_PITCHES,
    soundfont: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EmbeddingStudy:
    """Render, encode and average every (instrument, pitch) note of the study."""
    names = list(instruments or default_instruments(model))
    if len(names) < 2:
        raise EvaluationError("the embedding study compares instruments: give at least two")
    if not pitches:
        raise EvaluationError("the embedding study needs at least one pitch")
    embeddings = []
    for done, instrument in enumerate(names):
        notes = render_notes(instrument, pitches, soundfont)
        embeddings.append(np.stack([note_embedding(model, note) for note in notes]))
        if progress is not None:
            progress(done + 1, len(names))
    labels = [gm_program(n)[0] for n in names]
    return EmbeddingStudy(labels, list(pitches), np.stack(embeddings))
