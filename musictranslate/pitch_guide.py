"""Pitch-guided sampling: keep, among a few sampled continuations, the one that plays the input's pitch.

Why: the decoders follow their own past closely. Teacher-forced they keep the notes; free-running,
one unlucky draw moves the waveform's period and the decoder goes on from there, so translations
drift off the notes and play flat. The latent says which note sounds, but more weakly than the past
does. So every ``CHUNK`` samples ``candidates`` continuations are drawn side by side from the same
state (different random draws), each is scored by how well its newest samples repeat at the period
of the input's pitch there (pyin on the fitted input), and all candidates go on from the winner.
Once the past is in tune, the decoder's habit of following it keeps it in tune. Where the input is
unvoiced (or polyphonic enough that pyin finds no pitch) the first candidate is kept, which is what
plain sampling would have drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import SAMPLE_RATE

CHUNK = 200
"""Samples between choices (12.5 ms): short enough to catch a note change within a latent frame
(800 samples), long enough to hold several periods of any note the decoders play."""
SEARCH_SEMITONES = 2.0
"""A candidate's period is looked for within this many semitones of the wanted one."""
MISTUNING_PENALTY = 0.5
"""Score lost per semitone between a candidate's period and the wanted one: the periodicity
alone (normalised autocorrelation) hardly tells a note from its neighbour at short periods."""
CONTEXT = 128
"""Samples of the chosen past scored with each candidate, so a continuation that breaks the
waveform's period at the seam loses."""
HISTORY = 512
"""Samples of the chosen past handed to ``score``: more than ``CONTEXT`` plus the longest period
searched (pyin's lowest note, 65 Hz, two semitones down)."""
MIN_VOICED = 0.5
"""A chunk is guided when at least this share of its pitch frames is voiced."""


@dataclass(frozen=True)
class PitchGuide:
    """The input's pitch track: ``f0`` in Hz per ``hop`` samples, 0 where unvoiced."""

    f0: np.ndarray
    hop: int

    @classmethod
    def of(cls, audio: np.ndarray) -> PitchGuide:
        """Track mono 16 kHz ``audio`` (the fitted input the encoder reads) with pyin."""
        from .evaluate.pitch import HOP, pitch_contour

        contour = pitch_contour(audio)
        return cls(np.where(contour.voiced, np.nan_to_num(contour.f0), 0.0), HOP)

    def period(self, start: int, count: int) -> float:
        """The wanted period in samples over ``[start, start + count)``, 0 when not voiced."""
        first, last = max(0, start) // self.hop, max(0, start + count) // self.hop + 1
        frames = self.f0[first : min(last, len(self.f0))]
        voiced = frames[frames > 0]
        if len(frames) == 0 or len(voiced) < MIN_VOICED * len(frames):
            return 0.0
        return SAMPLE_RATE / float(np.median(voiced))


def _normalised_autocorrelation(x: np.ndarray, start: int, lags: np.ndarray) -> np.ndarray:
    """For each lag, the correlation of ``x[start:]`` with ``x`` that many samples earlier."""
    now = x[start:]
    scores = np.empty(len(lags))
    for i, lag in enumerate(lags):
        before = x[start - lag : len(x) - lag]
        scores[i] = (now @ before) / (np.sqrt((now @ now) * (before @ before)) + 1e-9)
    return scores


def score(history: np.ndarray, candidate: np.ndarray, period: float) -> float:
    """How well ``candidate`` (audio) continues ``history`` at ``period`` samples: the peak of the
    normalised autocorrelation within ``SEARCH_SEMITONES`` of it, less ``MISTUNING_PENALTY`` per
    semitone between that peak's (interpolated) lag and ``period``."""
    low = max(2, int(period * 2 ** (-SEARCH_SEMITONES / 12)))
    high = int(period * 2 ** (SEARCH_SEMITONES / 12)) + 2
    x = np.concatenate([history[-(CONTEXT + high) :], candidate])
    start = max(high, len(x) - len(candidate) - CONTEXT)
    if len(x) - start < low:
        return 0.0
    lags = np.arange(low, high + 1)
    r = _normalised_autocorrelation(x, start, lags)
    best = int(np.argmax(r))
    lag = float(lags[best])
    if 0 < best < len(r) - 1:  # the parabola through the peak and its neighbours
        curve = r[best - 1] - 2 * r[best] + r[best + 1]
        if curve < 0:
            lag += 0.5 * (r[best - 1] - r[best + 1]) / curve
    return float(r[best] - MISTUNING_PENALTY * abs(12 * np.log2(lag / period)))


def choose(history: np.ndarray, candidates: np.ndarray, period: float) -> int:
    """The index of the candidate (rows of ``candidates``, audio) to go on from; 0 unguided."""
    if period <= 0 or len(candidates) == 1:
        return 0
    return int(np.argmax([score(history, c, period) for c in candidates]))
