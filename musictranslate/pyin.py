"""Probabilistic YIN (pyin) as librosa computes it, with a Viterbi pass that only visits the
transitions pyin allows.

Why: every translation tracks two pitches with pyin (the input's, to retune onto, and the
output's, to retune from), and librosa's Viterbi pass is dense: each frame weighs every state
against every other, 640 x 640 at our settings (``evaluate/pitch.py``), although pyin lets a pitch
move by at most its ``max_transition_rate`` (35.92 octaves a second, 7 semitones a frame here), so
all but a band of ~36 bins either side are zero. That pass was four fifths of pyin's time and
grows with the square of the bins. Here it runs over the band, plus one term that stands for all
the zero transitions, which librosa scores as ``log(tiny)`` rather than minus infinity: the
states it decodes are librosa's (``tests/test_pitch_track.py`` compares them), in a fraction of the
time (``docs/speed.md``). The probabilities before it are librosa 0.11's, step for step, with its
default settings; the per-frame trough loop is compiled.

It imports neither librosa nor ``scipy.stats``: the few helpers of theirs pyin needs (framing, the
autocorrelation, the beta prior's CDF, the local transition matrix) are one-liners on numpy and
``scipy.special``, while importing those two packages took about 2 s, the largest single cost of a
short translation's start (``docs/speed.md``). The test against ``librosa.pyin`` covers them too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numba
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

T, R = TypeVar("T"), TypeVar("R")

N_THRESHOLDS = 100
BETA_PARAMETERS = (2.0, 18.0)
BOLTZMANN_PARAMETER = 2.0
MAX_TRANSITION_RATE = 35.92
SWITCH_PROB = 0.01
NO_TROUGH_PROB = 0.01
"""librosa.pyin's defaults, which every caller here uses."""
CHUNK_SECONDS, OVERLAP_SECONDS = 30.0, 2.0
"""Long audio is tracked 30 s at a time, each chunk reading 2 s more on either side: far more
than a frame (64 ms) and than the frames the Viterbi paths from any two states take to merge, so
the stitched chunks decode what one pass over the whole would but for rare frames (the count is
in docs/speed.md; ``tests/test_pitch_track.py`` checks a case with none)."""


def pyin(
    audio: np.ndarray,
    *,
    fmin: float,
    fmax: float,
    sr: int,
    frame_length: int,
    hop_length: int,
    resolution: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``librosa.pyin`` on mono ``audio`` (centred frames, zero padding, its other defaults):
    ``f0`` in Hz (NaN where unvoiced), the voiced flags and each frame's voiced probability.

    Audio longer than ``CHUNK_SECONDS`` is tracked in chunks that overlap by ``OVERLAP_SECONDS``
    on each side, each keeping its own stretch's frames, so memory stays flat in the length: in one
    pass, pyin's frames, their autocorrelations and the Viterbi tables cost over twenty times the
    audio."""
    settings = {"fmin": fmin, "fmax": fmax, "sr": sr, "frame_length": frame_length}
    settings |= {"hop_length": hop_length, "resolution": resolution}
    chunk = hop_length * max(1, round(CHUNK_SECONDS * sr / hop_length))
    overlap = hop_length * math.ceil(OVERLAP_SECONDS * sr / hop_length)
    if len(audio) <= chunk + 2 * overlap:
        return _whole(audio, **settings)
    n_frames = 1 + len(audio) // hop_length

    def stretch(start: int) -> list[np.ndarray]:
        lo, hi = max(0, start - overlap), min(len(audio), start + chunk + overlap)
        first = (start - lo) // hop_length
        count = min(chunk // hop_length, n_frames - start // hop_length)
        return [track[first : first + count] for track in _whole(audio[lo:hi], **settings)]

    parts = _side_by_side(stretch, range(0, len(audio), chunk))
    f0, voiced, prob = (np.concatenate(track) for track in zip(*parts, strict=True))
    return f0, voiced, prob


def pyin_each(pieces: Sequence[np.ndarray], **settings: float) -> list[tuple[np.ndarray, ...]]:
    """``pyin`` of each of ``pieces`` (keywords as ``pyin``'s), side by side like long audio's chunks."""
    return _side_by_side(lambda piece: pyin(piece, **settings), pieces)


def _side_by_side(track: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[track(item) for item in items]`` on the CPU threads torch may use: the compiled parts
    (most of pyin's time) release the GIL, so the chunks really run side by side (docs/speed.md)."""
    items = list(items)
    if len(items) < 2:
        return [track(item) for item in items]
    from .speed import available_workers  # imports torch: only for work worth a second thread

    workers = min(len(items), available_workers())
    if workers < 2:
        return [track(item) for item in items]
    with ThreadPoolExecutor(workers, thread_name_prefix="musictranslate-pyin") as pool:
        return list(pool.map(track, items))


def _whole(
    audio: np.ndarray,
    *,
    fmin: float,
    fmax: float,
    sr: int,
    frame_length: int,
    hop_length: int,
    resolution: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``pyin`` in one pass."""
    from scipy.special import betainc

    padded = np.pad(np.asarray(audio), frame_length // 2)
    frames = sliding_window_view(padded, frame_length)[::hop_length].T  # librosa.util.frame
    min_period = int(np.floor(sr / fmax))
    max_period = min(int(np.ceil(sr / fmin)), frame_length - 1)
    yin = _cumulative_mean_normalized_difference(frames, min_period, max_period)
    thresholds = np.linspace(0, 1, N_THRESHOLDS + 1)
    beta_probs = np.diff(betainc(*BETA_PARAMETERS, thresholds))  # the beta distribution's CDF
    trough_probs = _trough_probabilities(yin, thresholds[1:], beta_probs, BOLTZMANN_PARAMETER, NO_TROUGH_PROB)

    bins_per_semitone = int(np.ceil(1.0 / resolution))
    n_bins = int(np.floor(12 * bins_per_semitone * np.log2(fmax / fmin))) + 1
    period, frame = np.nonzero(trough_probs)
    f0_candidates = sr / (min_period + period + _parabolic_shifts(yin)[period, frame])
    pitch_bin = np.round(12 * bins_per_semitone * np.log2(f0_candidates / fmin))
    pitch_bin = np.clip(pitch_bin, 0, n_bins).astype(int)
    observation = np.zeros((2 * n_bins, yin.shape[1]))
    observation[pitch_bin, frame] = trough_probs[period, frame]
    voiced_prob = np.clip(observation[:n_bins].sum(axis=0), 0, 1)
    observation[n_bins:] = (1 - voiced_prob) / n_bins

    width = round(MAX_TRANSITION_RATE * 12 * hop_length / sr) * bins_per_semitone + 1
    local = _transition_local(n_bins, width)
    tiny = np.finfo(observation.dtype).tiny
    states = _banded_viterbi(
        np.log(observation.T + tiny),
        np.log((1 - SWITCH_PROB) * local + tiny),
        np.log(SWITCH_PROB * local + tiny),
        int(np.max(np.abs(np.subtract(*np.nonzero(local))))),
        float(np.log(1.0 / (2 * n_bins) + tiny)),
        float(np.log(tiny)),
    )
    freqs = fmin * 2 ** (np.arange(n_bins) / (12 * bins_per_semitone))
    voiced = states < n_bins
    f0 = np.where(voiced, freqs[states % n_bins], np.nan)
    return f0, voiced, voiced_prob


def _cumulative_mean_normalized_difference(
    frames: np.ndarray, min_period: int, max_period: int
) -> np.ndarray:
    """YIN's cumulative mean normalised difference for periods ``min_period..max_period``,
    ``(periods, frames)`` (de Cheveigne and Kawahara 2002, eq. 8), as librosa computes it."""
    acf = _autocorrelate(frames, max_period + 1)
    energy = np.cumsum(np.square(frames), axis=-2)
    energy[0] = 0  # librosa zeroes it before the difference below reads it
    difference = np.zeros_like(energy)
    difference[1 : max_period + 1] = 2 * (acf[0:1] - acf[1 : max_period + 1]) - energy[:max_period]
    lags = np.arange(1, max_period + 1)[:, None]
    cumulative_mean = np.cumsum(difference[1 : max_period + 1], axis=-2) / lags
    denominator = cumulative_mean[min_period - 1 : max_period]
    return difference[min_period : max_period + 1] / (denominator + np.finfo(denominator.dtype).tiny)


def _autocorrelate(frames: np.ndarray, lags: int) -> np.ndarray:
    """Each frame's (column's) autocorrelation at lags ``0..lags - 1``, through the FFT of the
    frame zero-padded to a fast length: ``librosa.autocorrelate``, whose FFT is numpy's too."""
    from scipy.fft import next_fast_len

    size = next_fast_len(2 * frames.shape[0] - 1, real=True)
    spectrum = np.fft.rfft(frames, n=size, axis=0)
    power = spectrum.real**2 + spectrum.imag**2
    return np.fft.irfft(power, n=size, axis=0)[:lags]


def _triangle(width: int) -> np.ndarray:
    """The symmetric triangular window, non-zero at both ends, computed as
    ``scipy.signal.windows.triang`` computes it (bit for bit: Viterbi ties break on the last bit)."""
    rising = np.arange(1, (width + 1) // 2 + 1)
    if width % 2:
        half = 2 * rising / (width + 1.0)
        return np.concatenate([half, half[-2::-1]])
    half = (2 * rising - 1.0) / width
    return np.concatenate([half, half[::-1]])


def _transition_local(n_states: int, width: int) -> np.ndarray:
    """``librosa.sequence.transition_local(n_states, width, window="triangle", wrap=False)``: row
    ``i`` is the triangle centred on state ``i`` as librosa places it (padded to the centre, then
    rolled, which puts an even width's extra bin on a side that depends on ``n_states``' parity),
    cut off at the ends and normalised to sum to one."""
    before = (n_states - width) // 2
    centred = np.pad(_triangle(width), (before, n_states - width - before))
    rows = np.stack([np.roll(centred, n_states // 2 + i + 1) for i in range(n_states)])
    state, column = np.arange(n_states)[:, None], np.arange(n_states)
    rows[(column >= state + width // 2 + 1) | (column < state - width // 2)] = 0
    return rows / rows.sum(axis=1, keepdims=True)


def _parabolic_shifts(yin: np.ndarray) -> np.ndarray:
    """Per period bin, the offset of the parabola through it and its neighbours' optimum; 0 at
    the ends and wherever the optimum lies more than a bin away."""
    before, here, after = yin[:-2], yin[1:-1], yin[2:]
    a = after + before - 2 * here
    b = (after - before) / 2
    shifts = np.zeros_like(yin)
    with np.errstate(divide="ignore", invalid="ignore"):
        shifts[1:-1] = np.where(np.abs(b) >= np.abs(a), 0, -b / a)
    return shifts


@numba.njit(cache=True, nogil=True)
def _trough_probabilities(yin, thresholds, beta_probs, boltzmann, no_trough_prob):  # pragma: no cover
    """Per frame, the probability that each trough of ``yin`` is the period: over thresholds
    drawn from the beta prior, the troughs below it share it by a Boltzmann prior on their order
    (shorter periods first); when none is below, ``no_trough_prob`` goes to the deepest."""
    n_periods, n_frames = yin.shape
    probs = np.zeros(yin.shape, dtype=yin.dtype)
    troughs = np.empty(n_periods, dtype=np.int64)
    decay = 1.0 - np.exp(-boltzmann)
    for t in range(n_frames):
        x = yin[:, t]
        count = 0
        for k in range(n_periods):
            if k == 0:
                low = n_periods > 1 and x[0] < x[1]
            elif k == n_periods - 1:
                low = x[k] < x[k - 1]
            else:
                low = x[k] < x[k - 1] and x[k] <= x[k + 1]
            if low:
                troughs[count] = k
                count += 1
        if count == 0:
            continue
        deepest = 0
        for c in range(1, count):
            if x[troughs[c]] < x[troughs[deepest]]:
                deepest = c
        frame_probs = np.zeros(count)
        for h in range(len(thresholds)):
            below = 0
            for c in range(count):
                if x[troughs[c]] < thresholds[h]:
                    below += 1
            position = 0
            for c in range(count):
                if x[troughs[c]] < thresholds[h]:
                    prior = decay * np.exp(-boltzmann * position) / (1.0 - np.exp(-boltzmann * below))
                    frame_probs[c] += prior * beta_probs[h]
                    position += 1
        above = 0
        for h in range(len(thresholds)):
            if not x[troughs[deepest]] < thresholds[h]:
                above += 1
        frame_probs[deepest] += no_trough_prob * np.sum(beta_probs[:above])
        for c in range(count):
            probs[troughs[c], t] = frame_probs[c]
    return probs


@numba.njit(cache=True, nogil=True)
def _banded_viterbi(log_obs, log_stay, log_switch, band, log_init, log_zero):  # pragma: no cover
    """The most likely state path through ``log_obs`` ``(frames, 2 * bins)``: voiced bins, then
    unvoiced ones. Moving from bin i to bin j costs ``log_stay[i, j]`` within a voicing and
    ``log_switch[i, j]`` across; both are ``log_zero`` beyond ``band`` bins, so there the best
    predecessor is simply the best state of the frame before."""
    n_frames, n_states = log_obs.shape
    n_bins = n_states // 2
    pointer = np.zeros((n_frames, n_states), dtype=np.uint16)
    previous = log_obs[0] + log_init
    value = np.empty(n_states)
    for t in range(1, n_frames):
        anywhere = int(np.argmax(previous))
        for j in range(n_states):
            to_bin, to_voiced = j % n_bins, j < n_bins
            best, best_at = previous[anywhere] + log_zero, anywhere
            for i in range(max(0, to_bin - band), min(n_bins, to_bin + band + 1)):
                for source in (i, i + n_bins):
                    same = (source < n_bins) == to_voiced
                    score = previous[source] + (log_stay[i, to_bin] if same else log_switch[i, to_bin])
                    if score > best or (score == best and source < best_at):
                        best, best_at = score, source
            pointer[t, j] = best_at
            value[j] = log_obs[t, j] + best
        previous, value = value, previous
    states = np.empty(n_frames, dtype=np.int64)
    states[-1] = np.argmax(previous)
    for t in range(n_frames - 2, -1, -1):
        states[t] = pointer[t + 1, states[t + 1]]
    return states
