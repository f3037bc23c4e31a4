"""Pitch contours (pyin) and the paper's contour metrics, each beside an absolute measure.

The paper compares the pitch contour of an input with that of its translation by normalised
cross-correlation at the optimal shift (NCC), and by DTW followed by a normalised correlation.
Both are zero-mean, so they cannot see a transposition (a +1 semitone output scores 0.999, as
measured on renders with known answers). :func:`compare` therefore always returns absolute
measures too: raw pitch and chroma accuracy (mir_eval, 50 cents) frame by frame, and the mean
error in cents along a DTW path over absolute pitch (which forgives timing, not wrong notes).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from ..config import SAMPLE_RATE
from . import EvaluationError, optional_import

FRAME_LENGTH = 1024
"""pyin analysis window (64 ms): two periods of the lowest pitch searched."""

HOP = 256
"""pyin hop (16 ms): 62.5 contour frames per second."""

FMIN = 65.0
"""Lowest pitch searched, C2: below the bass of the chorales."""

FMAX = 2600.0
"""Highest pitch searched: whistled melodies reach 2500 Hz."""

RESOLUTION = 0.2
"""pyin pitch-bin width in semitones, not librosa's 0.1: the Viterbi pass costs the square of
the bins per semitone, and the 10-cent quantisation 0.2 leaves is far inside the 50-cent
tolerance."""

FLAT_CENTS = 1.0
"""A contour whose standard deviation is below this is flat (a held note): correlation with it
is undefined, so two flat contours count as the same shape (1) and flat vs moving as none (0)."""

MAX_LAG_SECONDS = 0.5
"""Largest shift NCC searches by default (never more than half the shorter contour). A translation
is time-aligned with its input by construction; far shifts only find spurious matches when pyin
makes octave errors (measured on FluidR3 strings: a peak at -0.74 s)."""


@dataclass(frozen=True)
class Contour:
    """A pyin pitch track: ``f0`` in Hz (NaN where unvoiced), one value per ``hop`` samples."""

    f0: np.ndarray
    voiced: np.ndarray
    hop_seconds: float

    @property
    def times(self) -> np.ndarray:
        return np.arange(len(self.f0)) * self.hop_seconds

    @property
    def voiced_fraction(self) -> float:
        return float(self.voiced.mean()) if len(self.voiced) else 0.0

    def transposed(self, semitones: int) -> Contour:
        """The contour an input shifted by ``semitones`` (``input_fit``) would have."""
        return Contour(self.f0 * 2 ** (semitones / 12), self.voiced, self.hop_seconds)

    def cents(self) -> np.ndarray:
        """Pitch in cents on the MIDI scale (6900 = A4), NaN where unvoiced."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.voiced, 1200.0 * np.log2(self.f0 / 440.0) + 6900.0, np.nan)

    def filled_cents(self) -> np.ndarray:
        """Cents with unvoiced gaps bridged linearly (held at the ends): a continuous melody line
        the correlations can run over. Needs at least one voiced frame."""
        cents = self.cents()
        idx = np.flatnonzero(self.voiced)
        return np.interp(np.arange(len(cents)), idx, cents[idx])


def pitch_contour(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Contour:
    """Track the pitch of mono ``audio`` with probabilistic YIN (librosa's, banded: ``pyin.py``)."""
    from ..pyin import pyin

    audio = np.asarray(audio, dtype=np.float32)
    if len(audio) < FRAME_LENGTH:
        audio = np.pad(audio, (0, FRAME_LENGTH - len(audio)))
    f0, voiced, _ = pyin(
        audio,
        fmin=FMIN,
        fmax=FMAX,
        sr=sample_rate,
        frame_length=FRAME_LENGTH,
        hop_length=HOP,
        resolution=RESOLUTION,
    )
    return Contour(f0, voiced, HOP / sample_rate)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Zero-mean normalised correlation (Pearson) of two equal-length contours in cents."""
    a, b = a - a.mean(), b - b.mean()
    flat_a, flat_b = a.std() < FLAT_CENTS, b.std() < FLAT_CENTS
    if flat_a or flat_b:
        return 1.0 if flat_a and flat_b else 0.0
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def ncc_at_optimal_shift(source: np.ndarray, output: np.ndarray, max_lag: int) -> tuple[float, int]:
    """The paper's NCC: the best correlation over shifts of up to ``max_lag`` frames, and its lag.

    A positive lag means the output comes late: ``output[t + lag]`` lines up with ``source[t]``.
    Shifts are tried from the smallest outwards so that ties (flat contours) keep lag 0.
    """
    n = min(len(source), len(output))
    max_lag = max(0, min(max_lag, n // 2))
    best, best_lag = -math.inf, 0
    for lag in sorted(range(-max_lag, max_lag + 1), key=abs):
        a, b = source[max(0, -lag) :], output[max(0, lag) :]
        m = min(len(a), len(b))
        score = correlation(a[:m], b[:m])
        if score > best:
            best, best_lag = score, lag
    return best, best_lag


def dtw_path(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Optimal alignment of two 1-D sequences, ``(steps, 2)`` index pairs in time order."""
    import librosa

    _, path = librosa.sequence.dtw(X=a[None, :], Y=b[None, :], metric="euclidean")
    return path[::-1]


def dtw_correlation(source: np.ndarray, output: np.ndarray) -> float:
    """The paper's DTW measure: align the mean-removed contours, then correlate along the path."""
    path = dtw_path(source - source.mean(), output - output.mean())
    return correlation(source[path[:, 0]], output[path[:, 1]])


def dtw_cents_error(source: np.ndarray, output: np.ndarray) -> float:
    """Mean absolute pitch difference in cents along a DTW path over *absolute* pitch: timing
    may differ, but a transposition or wrong notes show up in full."""
    path = dtw_path(source, output)
    return float(np.mean(np.abs(source[path[:, 0]] - output[path[:, 1]])))


def pitch_accuracy(source: Contour, output: Contour) -> tuple[float, float]:
    """mir_eval raw pitch and raw chroma accuracy of ``output`` with ``source`` as the truth,
    frame by frame (both contours cut to the shorter one).

    An unvoiced output frame counts as a miss (its pyin guess is not trusted), so noise scores 0.
    Measured at lag 0, not at the NCC's lag: a translation keeps its input's timing, and a
    spurious NCC peak must not turn a right melody into a wrong one.
    """
    melody = optional_import("mir_eval.melody")

    def cents(contour: Contour) -> np.ndarray:
        return melody.hz2cents(np.where(contour.voiced, contour.f0, 0.0))

    n = min(len(source.f0), len(output.f0))
    args = (
        source.voiced[:n].astype(float),
        cents(source)[:n],
        output.voiced[:n].astype(float),
        cents(output)[:n],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no voiced frames": scored as 0 below, on purpose
        return (
            float(melody.raw_pitch_accuracy(*args)),
            float(melody.raw_chroma_accuracy(*args)),
        )


@dataclass(frozen=True)
class PitchScores:
    """How well an output keeps its source's melody.

    An output without pitch (noise) scores 0 on the correlations and accuracies, and ``None`` for
    the lag and the cents error, which do not exist for it.

    ``ncc``/``dtw_ncc`` are the paper's (transposition-blind) numbers; ``raw_pitch_accuracy`` and
    ``dtw_cents_error`` are the absolute ones to read beside them.
    """

    ncc: float | None
    lag_seconds: float | None
    dtw_ncc: float | None
    dtw_cents_error: float | None
    raw_pitch_accuracy: float
    raw_chroma_accuracy: float
    source_voiced: float
    output_voiced: float

    def to_dict(self) -> dict:
        return asdict(self)


def compare(source: Contour, output: Contour, max_lag_seconds: float = MAX_LAG_SECONDS) -> PitchScores:
    """Every pitch measure of ``output`` against ``source`` (the source is the truth)."""
    if source.voiced.sum() < 2:
        raise EvaluationError("the source has no pitched frames (pyin); pitch metrics need a melody")
    if output.voiced.sum() < 2:  # nothing of the melody is left: correlations 0, no lag, no error
        return PitchScores(0.0, None, 0.0, None, 0.0, 0.0, source.voiced_fraction, output.voiced_fraction)
    a, b = source.filled_cents(), output.filled_cents()
    ncc, lag = ncc_at_optimal_shift(a, b, round(max_lag_seconds / source.hop_seconds))
    rpa, rca = pitch_accuracy(source, output)
    return PitchScores(
        ncc=ncc,
        lag_seconds=lag * source.hop_seconds,
        dtw_ncc=dtw_correlation(a, b),
        dtw_cents_error=dtw_cents_error(a, b),
        raw_pitch_accuracy=rpa,
        raw_chroma_accuracy=rca,
        source_voiced=source.voiced_fraction,
        output_voiced=output.voiced_fraction,
    )


def score_pitch(
    source: np.ndarray, output: np.ndarray, max_lag_seconds: float = MAX_LAG_SECONDS
) -> PitchScores:
    """Track both signals and :func:`compare` them: the one call most users want."""
    return compare(pitch_contour(source), pitch_contour(output), max_lag_seconds)
