"""Retuning: put a translation, frame by frame, on the notes of the input.

Why: free-running, the decoders drift off the notes (the default model's card measures it: a
sample drawn given the true past keeps the notes, the translation plays most frames on another
pitch class, the whistles a semitone or two flat), and where they hiss they play no note at all.
The timbre they produce is the part worth keeping. So after decoding, the input's pitch track
(pyin) is snapped to the nearest notes of its own tuning, and wherever the input has a note:

* where the translation has a pitch too, it is shifted by the difference, folded into the
  nearest octave so it keeps the octave the decoder chose and no frame moves by more than half an
  octave;
* where the translation has none (noise, or a texture pyin cannot follow), short stretches of it
  are repeated at the note's period, which gives it that pitch with the translation's spectrum.

How: time-domain pitch-synchronous overlap-add (TD-PSOLA). Grains two analysis periods long, cut
one analysis period apart from the translation, are laid down at the wanted period; duration and
spectral envelope stay, and where the input has no pitch the grains go back where they were cut,
so the audio is unchanged there. librosa shifts only by one amount for a whole signal, and the
libraries that shift by a varying amount (Praat through parselmouth, Rubber Band) are GPL and need
a native binary, so the loop below is ours; it costs milliseconds a second of audio, the pitch
track of the translation far more.
"""

from __future__ import annotations

import numba
import numpy as np

from .config import SAMPLE_RATE
from .pitch_guide import PitchGuide
from .tuning import hz_to_midi, midi_to_hz

UNVOICED_PERIOD = 80
"""Grain spacing (5 ms) where the input has no note and the translation no pitch: grains are laid
where they were cut, so the overlap-add gives the signal back unchanged there."""


def nearest_notes(f0: np.ndarray) -> np.ndarray:
    """``f0`` (Hz, 0 unvoiced) moved to the nearest note of its own tuning: the equal-tempered
    grid shifted by the circular mean of its voiced frames' offsets from it, so an input a little
    off A440 keeps its tuning while its glides and vibrato (symmetric, so it leaves the mean
    alone) become steady notes. (The circular mean is the angle of the offsets' mean phasor, as
    ``scipy.stats.circmean`` has it; importing ``scipy.stats`` costs a translation about a second.)"""
    voiced = f0 > 0
    notes = np.zeros(len(f0))
    if voiced.any():
        midi = hz_to_midi(f0[voiced])
        offsets = midi - np.round(midi)
        tuning = np.angle(np.mean(np.exp(2j * np.pi * offsets))) / (2 * np.pi)
        notes[voiced] = midi_to_hz(np.round(midi - tuning) + tuning)
    return notes


def pull_semitones(wanted_f0: np.ndarray, played_f0: np.ndarray) -> np.ndarray:
    """Per frame, the semitones that move ``played_f0`` onto ``wanted_f0``'s pitch class, in
    [-6, 6); 0 where either is unvoiced (0 Hz)."""
    n = min(len(wanted_f0), len(played_f0))
    wanted, played = wanted_f0[:n], played_f0[:n]
    both = (wanted > 0) & (played > 0)
    shift = np.zeros(n)
    shift[both] = 12.0 * np.log2(wanted[both] / played[both])
    return np.where(both, (shift + 6.0) % 12.0 - 6.0, 0.0)


def overlap_add(audio: np.ndarray, period: np.ndarray, ratio: np.ndarray, hop: int = 1) -> np.ndarray:
    """TD-PSOLA: ``audio`` with its pitch multiplied by ``ratio``, where ``period`` is its own
    period in (fractional) samples, both given per frame of ``hop`` samples (centred: frame i
    describes the samples around i * hop). Each output grain is a Hann-windowed two-period cut
    around the analysis mark nearest in time; the sum is divided by the windows' sum, so the level
    does not depend on how densely grains overlap. Compiled (a minute of audio is some 30,000
    grains), and read per frame, so memory beyond the result is two float32 sums."""
    widest = int(np.ceil(period.max()))
    padded = np.concatenate([np.zeros(widest, np.float32), audio, np.zeros(2 * widest + 1, np.float32)])
    period, ratio = np.asarray(period, np.float64), np.asarray(ratio, np.float64)
    out, weight = _lay_grains(padded, len(audio), period, ratio, hop, widest)
    core = slice(widest, widest + len(audio))
    return np.divide(out[core], np.maximum(weight[core], np.float32(1e-3)))


@numba.njit(cache=True)
def _lay_grains(padded, n, frame_period, frame_ratio, hop, widest):  # pragma: no cover
    """The overlap-add of ``overlap_add`` on ``padded`` (the ``n`` samples of audio with
    ``widest`` samples of silence before and twice that after): the summed grains and windows."""
    last = len(frame_period) - 1

    def at_sample(values, i):
        return values[min((i + hop // 2) // hop, last)]

    marks = [0.0]  # in fractional samples, so rounding does not detune a high note's period
    while marks[-1] < n:
        marks.append(marks[-1] + at_sample(frame_period, int(marks[-1])))
    rounded = np.rint(np.array(marks)).astype(np.int64)
    out = np.zeros(n + 2 * widest + 1, dtype=np.float32)
    weight = np.zeros_like(out)
    at = 0.0
    while at < n:
        place = int(np.rint(at))
        k = np.searchsorted(rounded, place)
        if k == len(rounded) or (k > 0 and place - rounded[k - 1] < rounded[k] - place):
            k -= 1
        mark = min(rounded[k], n - 1)
        half = int(np.rint(at_sample(frame_period, mark)))
        for i in range(2 * half + 1):
            window = 1.0 if half == 0 else 0.5 - 0.5 * np.cos(np.pi * i / half)
            out[place + widest - half + i] += padded[mark + widest - half + i] * window
            weight[place + widest - half + i] += window
        here = min(place, n - 1)
        at += at_sample(frame_period, here) / at_sample(frame_ratio, here)
    return out, weight


REPEATS = 4
"""Where the translation has no pitch but the input has, each grain is cut this many wanted
periods apart and laid down at every period in between, so the same stretch of the translation
repeats at the note's period: its spectrum, the input's note."""


def retune(audio: np.ndarray, guide: PitchGuide) -> np.ndarray:
    """``audio`` (a translation, mono 16 kHz) on the nearest notes of ``guide`` (the input's
    pitch track): moved there where it has a pitch, made to repeat at the note's period where it
    has none (``REPEATS``), unchanged where the input has no pitch."""
    played = PitchGuide.of(audio)
    wanted = nearest_notes(guide.f0)
    n = min(len(wanted), len(played.f0))
    wanted = np.concatenate([wanted[:n], np.zeros(len(played.f0) - n)])
    shift = pull_semitones(wanted, played.f0)
    voiced = played.f0 > 0
    imposed = (wanted > 0) & ~voiced
    if not shift.any() and not imposed.any():
        return audio
    period = np.full(len(voiced), float(UNVOICED_PERIOD))
    ratio = np.ones(len(voiced))
    period[voiced] = SAMPLE_RATE / played.f0[voiced]
    ratio[voiced] = 2.0 ** (shift[voiced] / 12.0)
    period[imposed] = REPEATS * SAMPLE_RATE / wanted[imposed]
    ratio[imposed] = REPEATS
    return overlap_add(np.asarray(audio, dtype=np.float32), period, ratio, played.hop)
