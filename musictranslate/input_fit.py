"""Fit an input to what the encoder was trained on: its level and its register.

Why: the encoder knows only audio like its training data, and users' recordings differ from it
in two ways that have nothing to do with the instrument. Measured on the shipped model at step
3,900: the three whistled test tunes (about -9 dBFS, median pitch 1.17 kHz; the training renders
sit at -20 dBFS with melodies around 500 Hz) came back from the piano decoder as unvoiced noise.
Brought to the training level alone, or an octave down alone, they still did; brought to the
level *and* an octave down, pyin found pitch in 24-36 % of the output and the paper's DTW score
rose from 0.00 to 0.59-0.83. So before encoding:

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
"""pyin reads at most 10 evenly spaced 2 s windows: ~1 s of work on any length of input."""
MIN_VOICED = 0.2
"""Below this share of voiced frames there is no melody to place, and nothing is shifted."""
MAX_GAIN_DB = 30.0
"""The level fit never scales by more than this, so near-silence is not blown up into noise."""
PEAK = 0.99
"""The level fit never pushes a peak past this: the encoder's mu-law input clips at 1."""

AUTO = "auto"


@dataclass(frozen=True)
class FittedInput:
    """The audio the encoder reads, and what was done to the user's input to get it."""

    audio: np.ndarray
    semitones: int
    gain_db: float


def median_pitch_hz(audio: np.ndarray) -> float | None:
    """Median pyin f0 of the input's voiced frames, or ``None`` when it has no clear melody."""
    import librosa

    window = int(ANALYSIS_SECONDS * SAMPLE_RATE)
    count = len(audio) // window
    if count <= ANALYSIS_WINDOWS:
        excerpt = audio[: max(count, 1) * window]
    else:
        starts = np.linspace(0, count - 1, ANALYSIS_WINDOWS).astype(int) * window
        excerpt = np.concatenate([audio[s : s + window] for s in starts])
    f0, voiced, _ = librosa.pyin(
        np.asarray(excerpt, dtype=np.float32), fmin=60.0, fmax=2500.0, sr=SAMPLE_RATE, hop_length=1024
    )
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
    if semitones:
        import librosa

        audio = librosa.effects.pitch_shift(
            np.asarray(audio, dtype=np.float32), sr=SAMPLE_RATE, n_steps=semitones, res_type="soxr_hq"
        )
    gain_db = 0.0
    level = loudness_db(audio) if level_db is not None else None
    if level is not None:
        peak = float(np.max(np.abs(audio)))
        headroom_db = 20 * math.log10(PEAK / peak)
        gain_db = float(np.clip(level_db - level, -MAX_GAIN_DB, min(MAX_GAIN_DB, headroom_db)))
        audio = (audio * 10 ** (gain_db / 20)).astype(np.float32)
    return FittedInput(audio, semitones, gain_db)
