"""Pitch scored against the notes themselves: the MIDI score the test renders were made from.

Why not only against the input's pitch track (:mod:`.pitch`): pyin on the input has its own
errors, and a translation can follow a wrong track. The recipe keeps every rendered score
(``data/midi``), so each frame's truth is known exactly.

What counts as right in a polyphonic piece: a frame is scored against the *sounding note nearest
to the output's pitch* (in cents for pitch accuracy, octave-folded for chroma accuracy), so an
output that follows any voice of a chorale is on the notes, and one between the voices is not.
For a monophonic piece that is exactly mir_eval's raw pitch / raw chroma accuracy against the
melody. Frames where no note sounds (rests, release tails) are not scored, as in mir_eval; an
unvoiced output frame where a note sounds counts as a miss.

The median offset (semitones, octave-folded into [-6, 6)) is what the ear hears as "flat" or
"sharp": a model that plays every note a whole tone low scores -2 here while its octave-blind
correlations stay near 1.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..recipes.midi import NoteScore, read_midi
from . import EvaluationError, optional_import
from .pitch import Contour

PITCHES = 128
"""MIDI pitch numbers a score can hold."""


def read_notes(path: Path) -> NoteScore:
    """The notes of a MIDI file the recipe wrote; a missing or broken file is an EvaluationError."""
    try:
        return read_midi(path.read_bytes())[0]
    except (OSError, ValueError, IndexError) as exc:
        raise EvaluationError(f"{path}: cannot read its notes ({exc})") from None


def first_onset_seconds(score: NoteScore) -> float:
    """When the first note starts: renders are trimmed to begin there (``recipes.render.finish``)."""
    return score.seconds(min((n.start for part in score.parts for n in part), default=0))


def sounding(
    score: NoteScore, start_seconds: float, frames: int, hop_seconds: float, semitones: int = 0
) -> np.ndarray:
    """``(frames, 128)`` booleans: which MIDI pitches (shifted by ``semitones``) sound at frame
    ``i``, whose time is ``start_seconds + i * hop_seconds`` in the score (pyin's centred frames)."""
    grid = np.zeros((frames, PITCHES), dtype=bool)
    for part in score.parts:
        for note in part:
            pitch = note.pitch + semitones
            if not 0 <= pitch < PITCHES:
                continue
            first = int(np.ceil((score.seconds(note.start) - start_seconds) / hop_seconds))
            stop = int(np.ceil((score.seconds(note.end) - start_seconds) / hop_seconds))
            grid[max(first, 0) : max(min(stop, frames), 0), pitch] = True
    return grid


@dataclass(frozen=True)
class NoteScores:
    """An output's pitch against the notes (see the module docstring for the polyphonic rule)."""

    note_pitch_accuracy: float
    note_chroma_accuracy: float
    pitch_offset: float | None  # median semitones, octave-folded; None when no frame is voiced

    def to_dict(self) -> dict:
        return asdict(self)


def score_notes(contour: Contour, notes: np.ndarray) -> NoteScores:
    """mir_eval raw pitch and chroma accuracy (50 cents) and the median offset of ``contour``
    against the ``notes`` grid from :func:`sounding` (cut to the shorter of the two)."""
    melody = optional_import("mir_eval.melody")
    n = min(len(contour.f0), len(notes))
    notes = notes[:n]
    reference_voiced = notes.any(axis=1)
    if not reference_voiced.any():
        raise EvaluationError("no note sounds in the clip; note accuracy needs notes")
    voiced = contour.voiced[:n] & np.isfinite(contour.f0[:n])
    output = np.where(voiced, 1200.0 * np.log2(np.where(voiced, contour.f0[:n], 440.0) / 440.0) + 6900.0, 0.0)
    difference = output[:, None] - 100.0 * np.arange(PITCHES)[None, :]  # cents to every pitch
    folded = (difference + 600.0) % 1200.0 - 600.0
    far = np.where(notes, 0.0, np.inf)
    nearest = np.argmin(np.abs(difference) + far, axis=1)
    nearest_chroma = np.argmin(np.abs(folded) + far, axis=1)

    def cents(pitches: np.ndarray) -> np.ndarray:
        return melody.hz2cents(np.where(reference_voiced, 440.0 * 2 ** ((pitches - 69) / 12), 0.0))

    estimate = melody.hz2cents(np.where(voiced, contour.f0[:n], 0.0))
    truth_voicing, estimate_voicing = reference_voiced.astype(float), voiced.astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no voiced frames" in the estimate: scored 0, on purpose
        pitch = melody.raw_pitch_accuracy(truth_voicing, cents(nearest), estimate_voicing, estimate)
        chroma = melody.raw_chroma_accuracy(truth_voicing, cents(nearest_chroma), estimate_voicing, estimate)
    both = voiced & reference_voiced
    offsets = folded[np.flatnonzero(both), nearest_chroma[both]] / 100.0
    return NoteScores(float(pitch), float(chroma), float(np.median(offsets)) if len(offsets) else None)
