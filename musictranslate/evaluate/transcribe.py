"""The transcribe-and-render baseline: what a user could do instead of translating.

Track the input's pitch (pyin), cut the track into notes, write them to MIDI and render them with
the recipe's soundfont in the target instrument's General MIDI program. Every report shows it
beside the translation, so a model that does not beat it says so (design.md, "Evaluation").

Notes from a pitch track: runs of voiced frames on one rounded semitone, at least
:data:`MIN_NOTE_SECONDS` long (shorter runs are a whistle's onset scoop or a pyin glitch and are
dropped); two runs on the same semitone with no unvoiced frame between them are one note, an
unvoiced gap between them re-articulates it. pyin follows one line, so on a polyphonic input the
baseline plays that line only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import SAMPLE_RATE
from ..recipes.midi import DEFAULT_TEMPO_US, TICKS_PER_QUARTER, Note, NoteScore, write_midi
from ..tuning import hz_to_midi
from . import EvaluationError
from .pitch import Contour

MIN_NOTE_SECONDS = 0.06
"""Shortest note kept: longer than a whistle's onset scoop, shorter than a sixteenth at 120 qpm."""

VELOCITY = 90
RMS_DBFS = -20.0
"""Level of the rendered baseline: the recipe's renders are normalised to it too."""

TICKS_PER_SECOND = TICKS_PER_QUARTER * 1e6 / DEFAULT_TEMPO_US


@dataclass(frozen=True)
class TrackNote:
    """A note cut from a pitch track: onset and duration in seconds, MIDI pitch."""

    onset: float
    duration: float
    pitch: int


def contour_notes(contour: Contour, min_seconds: float = MIN_NOTE_SECONDS) -> list[TrackNote]:
    """Cut a pyin track into notes (the rule is in the module docstring)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        midi = hz_to_midi(contour.f0)
    rounded = np.where(contour.voiced & np.isfinite(midi), np.round(np.nan_to_num(midi)), -1).astype(int)
    min_frames = max(1, round(min_seconds / contour.hop_seconds))
    runs: list[list[int]] = []  # [first frame, end frame, pitch]
    start = 0
    for end in range(1, len(rounded) + 1):
        if end < len(rounded) and rounded[end] == rounded[start]:
            continue
        pitch = int(rounded[start])
        if pitch >= 0 and end - start >= min_frames:
            if runs and runs[-1][2] == pitch and contour.voiced[runs[-1][1] : start].all():
                runs[-1][1] = end
            else:
                runs.append([start, end, pitch])
        start = end
    hop = contour.hop_seconds
    return [TrackNote(first * hop, (end - first) * hop, pitch) for first, end, pitch in runs]


def render_notes(
    notes: list[TrackNote], program: int, samples: int, semitones: int = 0, soundfont: str | None = None
) -> np.ndarray:
    """``notes`` (shifted by ``semitones``) rendered in GM ``program``, ``samples`` long, aligned
    with the clip they were cut from (no lead-in trimmed) and at the recipe's loudness."""
    from ..recipes.render import RenderError, render_bytes

    score = NoteScore(
        [
            [
                Note(
                    round(n.onset * TICKS_PER_SECOND),
                    round((n.onset + n.duration) * TICKS_PER_SECOND),
                    n.pitch + semitones,
                    VELOCITY,
                )
                for n in notes
            ]
        ],
        [(0, DEFAULT_TEMPO_US)],
    )
    try:
        audio = render_bytes(
            write_midi(score, program=program), soundfont, max_seconds=samples / SAMPLE_RATE + 1
        )
    except RenderError as exc:
        raise EvaluationError(f"transcribe-and-render baseline: {exc}") from None
    out = np.zeros(samples, dtype=np.float32)
    out[: min(samples, len(audio))] = audio[:samples]
    rms = float(np.sqrt(np.mean(out.astype(np.float64) ** 2)))
    return out * (10 ** (RMS_DBFS / 20) / rms) if rms > 0 else out


def unavailable(soundfont: str | None = None) -> str | None:
    """Why the baseline cannot be rendered here (no soundfont, no FluidSynth), or None."""
    from ..recipes.render import find_soundfont, fluidsynth_cli, fluidsynth_lib

    if find_soundfont(soundfont) is None:
        return "no General MIDI soundfont (install fluid-soundfont-gm or set MUSICTRANSLATE_SOUNDFONT)"
    if fluidsynth_lib() is None and fluidsynth_cli() is None:
        return "FluidSynth is not installed (apt-get install fluidsynth)"
    return None


def transcribe_and_render(
    contour: Contour, program: int, samples: int, semitones: int = 0, soundfont: str | None = None
) -> np.ndarray:
    """The baseline for one clip: its pitch track's notes rendered in ``program``."""
    notes = contour_notes(contour)
    if not notes:
        raise EvaluationError("transcribe-and-render baseline: pyin found no note in the input")
    return render_notes(notes, program, samples, semitones, soundfont)
