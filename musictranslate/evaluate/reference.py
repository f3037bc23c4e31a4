"""Scores against a parallel reference: the same notes rendered on the target instrument.

The paper had no ground truth; our test split is rendered in every domain, so a translation can be
compared with the real thing. Content and timbre get separate numbers (docs/design.md,
"Evaluation: which number means what"):

* timbre - multi-resolution STFT distance and log-mel distance (both after RMS normalisation, so
  a louder output is not penalised for its gain);
* notes - chroma similarity (octave-folded pitch classes, robust to timbre);
* attacks - onset F-measure (mir_eval). It fails on slow attacks (strings, organ, choir), so
  callers ask for it only for percussive targets (:data:`ONSET_DOMAINS`).

Every function crops both signals to the shorter length: a translation keeps its input's length.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

from ..config import SAMPLE_RATE
from . import optional_import

ONSET_DOMAINS = frozenset({"piano", "harpsichord"})
"""Domains with sharp attacks, where onset F-measure means something."""

STFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))
"""(FFT size, hop) pairs of the multi-resolution STFT distance: 32 to 128 ms windows."""

N_MELS = 80
MEL_FFT, MEL_HOP = 1024, 256
EPS = 1e-7
DYNAMIC_RANGE_DB = 80.0
"""Spectra are compared over this range below the reference's peak; quieter bins are clamped to
the floor, so numerical dust in near-silent bins (a pure tone has many) cannot dominate."""
ONSET_WINDOW = 0.05
"""Seconds within which an onset counts as found (mir_eval's default, 50 ms)."""


def _crop(output: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(output), len(reference))
    return np.asarray(output[:n], np.float32), np.asarray(reference[:n], np.float32)


def _unit_rms(audio: np.ndarray) -> np.ndarray:
    return audio / max(float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))), EPS)


def _magnitude(audio: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    import librosa

    if len(audio) < n_fft:
        audio = np.pad(audio, (0, n_fft - len(audio)))
    return np.abs(librosa.stft(audio, n_fft=n_fft, hop_length=hop))


def multi_resolution_stft_distance(output: np.ndarray, reference: np.ndarray) -> float:
    """Spectral convergence plus mean absolute log-magnitude difference, averaged over
    :data:`STFT_RESOLUTIONS` (the auraloss/Parallel WaveGAN loss). 0 for identical signals."""
    output, reference = (_unit_rms(x) for x in _crop(output, reference))
    total = 0.0
    for n_fft, hop in STFT_RESOLUTIONS:
        out, ref = _magnitude(output, n_fft, hop), _magnitude(reference, n_fft, hop)
        convergence = np.linalg.norm(ref - out) / max(float(np.linalg.norm(ref)), EPS)
        floor = max(float(ref.max()) * 10 ** (-DYNAMIC_RANGE_DB / 20), EPS)
        log_distance = np.mean(np.abs(np.log(np.maximum(ref, floor)) - np.log(np.maximum(out, floor))))
        total += float(convergence + log_distance)
    return total / len(STFT_RESOLUTIONS)


def log_mel(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, n_mels: int = N_MELS) -> np.ndarray:
    """Log-mel power spectrogram in dB (0 dB = full-scale power), ``(n_mels, frames)``."""
    import librosa

    if len(audio) < MEL_FFT:
        audio = np.pad(audio, (0, MEL_FFT - len(audio)))
    mel = librosa.feature.melspectrogram(
        y=audio, sr=sample_rate, n_fft=MEL_FFT, hop_length=MEL_HOP, n_mels=n_mels, fmin=30.0
    )
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).astype(np.float32)


def log_mel_distance(output: np.ndarray, reference: np.ndarray) -> float:
    """Mean absolute log-mel difference in dB between RMS-normalised signals (0: identical)."""
    output, reference = (_unit_rms(x) for x in _crop(output, reference))
    out, ref = log_mel(output), log_mel(reference)
    floor = float(ref.max()) - DYNAMIC_RANGE_DB
    return float(np.mean(np.abs(np.maximum(out, floor) - np.maximum(ref, floor))))


def _chroma(audio: np.ndarray) -> np.ndarray:
    import librosa

    with warnings.catch_warnings():
        # the CQT's lowest octaves see a decimated signal; on clips of a second or two librosa
        # warns that it is shorter than one FFT and pads it, which is what we want
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        return librosa.feature.chroma_cqt(y=audio, sr=SAMPLE_RATE, hop_length=512, norm=None)


def chroma_similarity(output: np.ndarray, reference: np.ndarray, floor_db: float = 40.0) -> float:
    """Mean cosine similarity of chroma vectors over frames where both signals sound (louder than
    ``floor_db`` below their peak): 1 for the same notes whatever the instrument."""
    output, reference = _crop(output, reference)
    a, b = _chroma(output), _chroma(reference)
    m = min(a.shape[1], b.shape[1])
    a, b = a[:, :m], b[:, :m]
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    sounding = (na > na.max() * 10 ** (-floor_db / 20)) & (nb > nb.max() * 10 ** (-floor_db / 20))
    if not sounding.any():
        return 0.0
    cosine = (a * b).sum(axis=0)[sounding] / (na[sounding] * nb[sounding])
    return float(np.mean(cosine))


def onsets(audio: np.ndarray) -> np.ndarray:
    """Onset times in seconds (librosa's spectral-flux detector)."""
    import librosa

    return librosa.onset.onset_detect(y=audio, sr=SAMPLE_RATE, units="time")


def onset_f_measure(output: np.ndarray, reference: np.ndarray) -> float | None:
    """mir_eval onset F-measure of the output's onsets against the reference's (50 ms window);
    ``None`` when the reference has no onsets to find."""
    onset = optional_import("mir_eval.onset")
    output, reference = _crop(output, reference)
    ref = onsets(reference)
    if len(ref) == 0:
        return None
    f_measure, _, _ = onset.f_measure(ref, onsets(output), window=ONSET_WINDOW)
    return float(f_measure)


@dataclass(frozen=True)
class ReferenceScores:
    """An output against its parallel reference. Distances: lower is better; the rest higher."""

    stft_distance: float
    log_mel_distance: float
    chroma_similarity: float
    onset_f: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def score_reference(output: np.ndarray, reference: np.ndarray, with_onsets: bool = True) -> ReferenceScores:
    """Every reference measure; pass ``with_onsets=False`` for slow-attack targets."""
    return ReferenceScores(
        stft_distance=multi_resolution_stft_distance(output, reference),
        log_mel_distance=log_mel_distance(output, reference),
        chroma_similarity=chroma_similarity(output, reference),
        onset_f=onset_f_measure(output, reference) if with_onsets else None,
    )
