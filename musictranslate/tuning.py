"""Equal-tempered pitch: frequencies and (fractional) MIDI note numbers, A4 = 440 Hz = note 69.

One home for the conversion the retune grid, the whistle recipe and the transcriber share, so
none of them imports librosa for two lines of arithmetic.
"""

from __future__ import annotations

import numpy as np

A4_HZ = 440.0
A4_MIDI = 69.0


def midi_to_hz(pitch: np.ndarray | float) -> np.ndarray | float:
    """Equal-tempered frequency of a (fractional) MIDI pitch."""
    return A4_HZ * 2.0 ** ((np.asarray(pitch) - A4_MIDI) / 12.0)


def hz_to_midi(hz: np.ndarray | float) -> np.ndarray | float:
    """Fractional MIDI pitch of a frequency (Hz, above zero)."""
    return A4_MIDI + 12.0 * np.log2(np.asarray(hz) / A4_HZ)
