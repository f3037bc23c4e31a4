"""Output level: match the input's loudness and never clip.

A decoder trained on one instrument renders at that instrument's training level, so a quiet
whistle can come back as a loud organ (domains differ by ~12 dB RMS, docs/design.md). Users
expect a translation to sit at the level of what they put in, and a clipped file is ruined for good.

Loudness here is *gated RMS*: the power of 400 ms blocks (75 % overlap), dropping blocks below
-70 dBFS and then those 10 dB below the mean of the rest -- the gating of ITU-R BS.1770 without its
K-weighting filter. It needs no extra dependency, works on clips shorter than 0.4 s (one block the
length of the clip) and returns ``None`` on silence instead of -inf, which are the two places
pyloudnorm would need special cases.
"""

from __future__ import annotations

import numpy as np

from .config import SAMPLE_RATE

BLOCK_SECONDS = 0.4
ABSOLUTE_GATE_DB = -70.0
RELATIVE_GATE_DB = -10.0
PEAK_CEILING = 10 ** (-1.0 / 20)
"""-1 dBFS: the highest peak a level-matched output may have, so encoders downstream do not clip."""
MAX_GAIN_DB = 30.0
"""Never amplify by more than this: a near-silent output would otherwise become loud noise."""
CHUNK = 1 << 20
"""Samples squared and summed at a time, so an hours-long file is never copied whole in float64."""


def _db(power: float | np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(power, 1e-20))


def _energy_before(audio: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``sum(audio[:i] ** 2)`` in float64 for each ``i`` of the sorted ``positions``: a running
    sum over chunks instead of a full-length float64 cumsum (four copies of the file)."""
    out = np.zeros(positions.size)
    done = np.searchsorted(positions, 0, side="right")  # positions at 0 sum nothing
    total = 0.0
    for lo in range(0, audio.size, CHUNK):
        running = np.cumsum(np.square(audio[lo : lo + CHUNK], dtype=np.float64)) + total
        end = np.searchsorted(positions, lo + running.size, side="right")
        out[done:end] = running[positions[done:end] - lo - 1]
        done, total = end, float(running[-1])
    return out


def loudness_db(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float | None:
    """Gated RMS level of ``audio`` in dBFS (a full-scale sine is -3), or ``None`` when silent."""
    audio = np.asarray(audio)
    if audio.size == 0:
        return None
    block = min(int(BLOCK_SECONDS * sample_rate), audio.size)
    hop = max(1, block // 4)
    starts = np.arange(0, audio.size - block + 1, hop)
    edges = np.unique(np.concatenate([starts, starts + block]))
    energy = _energy_before(audio, edges)
    power = (energy[np.searchsorted(edges, starts + block)] - energy[np.searchsorted(edges, starts)]) / block
    power = power[_db(power) > ABSOLUTE_GATE_DB]
    if power.size == 0:
        return None
    power = power[_db(power) > _db(power.mean()) + RELATIVE_GATE_DB]
    return float(_db(power.mean()))


def limit_peak(audio: np.ndarray, ceiling: float = PEAK_CEILING) -> np.ndarray:
    """Scale ``audio`` down as a whole when its peak exceeds ``ceiling`` (no distortion added)."""
    peak = max(float(audio.max()), -float(audio.min())) if audio.size else 0.0  # no abs() copy
    if peak <= ceiling:
        return audio
    return (audio * (ceiling / peak)).astype(audio.dtype, copy=False)


def match_loudness(audio: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``audio`` at ``reference``'s loudness, peak-limited to -1 dBFS so it never clips.

    When either side is silent the audio is only peak-limited. The peak limit wins over the
    loudness match: a quiet, spiky output may end up a little quieter than the reference.
    """
    target, current = loudness_db(reference), loudness_db(audio)
    if target is not None and current is not None:
        gain_db = min(target - current, MAX_GAIN_DB)
        audio = (audio * 10 ** (gain_db / 20)).astype(np.float32, copy=False)
    return limit_peak(audio)
