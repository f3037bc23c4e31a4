"""Fit an input to what the encoder was trained on: its level and its register.

Why: the encoder knows only audio like its training data, and users' recordings differ from it
in two ways that have nothing to do with the instrument. The whistled test tunes sit at about
-9 dBFS with a median pitch of 1.17 kHz; the training renders at -20 dBFS, with melodies around
500 Hz. Fitted to the training level, and to it and an octave down, whistles came out of the
piano decoder with far more pitched frames than as they were (the A/B is in the default model's
card, models/default/README.md). So before encoding:

* the input is scaled to the level the model recorded from its training data (``loudness_db``;
  the output's level is matched back to the input's afterwards, so users never hear this), and
* an input whose melody sits above ``REGISTER_CEILING_HZ`` is shifted down by whole octaves
  (librosa's pitch shift) -- the translation then plays that many octaves lower, as an arranger
  would move a whistled line into the piano's middle register. ``transpose`` overrides it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import SAMPLE_RATE
from .loudness import loudness_db

REGISTER_CEILING_HZ = 800.0
"""Highest median melody pitch left where it is. The training pieces' top voices have median
pitches of 392/494/587 Hz (10th/50th/90th percentile, from the recipe's MIDI); whistling sits at
0.6-2.5 kHz, an octave or two above every instrument's melodies in the data."""
ANALYSIS_WINDOWS, ANALYSIS_SECONDS = 10, 2.0
"""pyin reads at most 10 evenly spaced 2 s windows, so the fit costs the same on any length."""
ANALYSIS_RESOLUTION = 0.25
"""pyin's pitch bins, in semitones. The fit only decides whole octaves, and pyin's Viterbi pass
costs the square of its bins: at its default 0.1 one 2 s window took 0.36 s, at 0.25 0.05 s,
with the whistle's median pitch the same to 0.01%."""
MIN_VOICED = 0.2
"""Below this share of voiced frames there is no melody to place, and nothing is shifted."""
MAX_GAIN_DB = 30.0
"""The level fit never scales by more than this, so near-silence is not blown up into noise."""
PEAK = 0.99
"""The level fit never pushes a peak past this: the encoder's mu-law input clips at 1."""

SHIFT_CHUNK_SECONDS, SHIFT_OVERLAP_SECONDS = 30.0, 0.5
"""Pitch shifting works on 30 s chunks crossfaded over 0.5 s: a phase vocoder over a whole
hours-long file would hold its STFT (~16x the audio) in memory."""

MIN_SHIFT = 4096
"""Shorter clips are padded to this for the shift: librosa's 2048-point STFT warns below it."""

AUTO = "auto"


@dataclass(frozen=True)
class FittedInput:
    """The audio the encoder reads, and what was done to the user's input to get it."""

    audio: np.ndarray
    semitones: int
    gain_db: float


def median_pitch_hz(audio: np.ndarray) -> float | None:
    """Median pyin f0 of the input's voiced frames, or ``None`` when it has no clear melody."""
    from .pyin import pyin_each

    window = int(ANALYSIS_SECONDS * SAMPLE_RATE)
    count = max(1, len(audio) // window)
    starts = np.unique(np.linspace(0, count - 1, min(count, ANALYSIS_WINDOWS)).astype(int)) * window
    tracks = pyin_each(
        [np.asarray(audio[s : s + window], dtype=np.float32) for s in starts],
        fmin=60.0,
        fmax=2500.0,
        sr=SAMPLE_RATE,
        frame_length=2048,
        hop_length=1024,
        resolution=ANALYSIS_RESOLUTION,
    )
    f0 = np.concatenate([track[0] for track in tracks])
    voiced = np.concatenate([track[1] for track in tracks])
    if voiced.mean() < MIN_VOICED:
        return None
    return float(np.median(f0[voiced]))


def auto_semitones(audio: np.ndarray) -> int:
    """Whole octaves down (as semitones, <= 0) that bring the melody to at most the ceiling."""
    pitch = median_pitch_hz(audio)
    if pitch is None or pitch <= REGISTER_CEILING_HZ:
        return 0
    return -12 * math.ceil(math.log2(pitch / REGISTER_CEILING_HZ))


def fit_input(audio: np.ndarray, level_db: float | None, transpose: int | str = AUTO) -> FittedInput:
    """Shift ``audio`` by ``transpose`` semitones (``"auto"``: see ``auto_semitones``), then scale
    it to ``level_db`` (the model's training level; ``None`` leaves the level alone)."""
    semitones = auto_semitones(audio) if transpose == AUTO else int(transpose)
    own_copy = bool(semitones)
    if semitones:
        audio = pitch_shift(audio, semitones)
    gain_db = 0.0
    level = loudness_db(audio) if level_db is not None else None
    if level is not None:
        peak = max(float(audio.max()), -float(audio.min()))  # no |audio| copy of a long file
        headroom_db = 20 * math.log10(PEAK / peak)
        gain_db = float(np.clip(level_db - level, -MAX_GAIN_DB, min(MAX_GAIN_DB, headroom_db)))
        gain = np.float32(10 ** (gain_db / 20))
        audio = np.multiply(audio, gain, out=audio if own_copy else None, dtype=np.float32)
    return FittedInput(audio, semitones, gain_db)


def pitch_shift(audio: np.ndarray, semitones: int) -> np.ndarray:
    """``audio`` shifted by ``semitones`` (librosa), chunk by chunk so memory stays bounded."""
    import librosa

    chunk, overlap = int(SHIFT_CHUNK_SECONDS * SAMPLE_RATE), int(SHIFT_OVERLAP_SECONDS * SAMPLE_RATE)
    out = np.empty(len(audio), dtype=np.float32)
    fade_in = np.linspace(0.0, 1.0, overlap, dtype=np.float32)
    for start in range(0, len(audio), chunk):
        lo, hi = max(0, start - overlap), min(len(audio), start + chunk)
        segment = np.pad(np.asarray(audio[lo:hi], dtype=np.float32), (0, max(0, MIN_SHIFT - (hi - lo))))
        piece = librosa.effects.pitch_shift(segment, sr=SAMPLE_RATE, n_steps=semitones, res_type="soxr_hq")
        seam = start - lo  # the previous chunk's tail, crossfaded into this one's head
        out[lo:start] = out[lo:start] * (1 - fade_in[:seam]) + piece[:seam] * fade_in[:seam]
        out[start:hi] = piece[seam : hi - lo]
    return out
