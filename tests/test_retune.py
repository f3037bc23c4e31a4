"""Retuning: a translation's pitch pulled onto the input's, through ``retune`` and ``translate``."""

from __future__ import annotations

import numpy as np
import pytest

from musictranslate.config import SAMPLE_RATE
from musictranslate.pitch_guide import PitchGuide
from musictranslate.retune import overlap_add, retune


def buzz(hz: float, seconds: float = 1.5, vibrato: float = 0.0) -> np.ndarray:
    """A band-limited sawtooth: a tone with harmonics, as an instrument has; ``vibrato``
    semitones either way at 5 Hz."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(hz * 2 ** (vibrato * np.sin(2 * np.pi * 5 * t) / 12)) / SAMPLE_RATE
    harmonics = range(1, int(SAMPLE_RATE / 2 / (hz * 2 ** (vibrato / 12))))
    return (0.2 * sum(np.sin(k * phase) / k for k in harmonics)).astype(np.float32)


def median_semitones(audio: np.ndarray, hz: float) -> float:
    f0 = PitchGuide.of(audio).f0
    return float(12 * np.log2(np.median(f0[f0 > 0]) / hz))


@pytest.mark.parametrize("semitones", [-3.0, 1.0, 2.5])
def test_retune_moves_a_tone_onto_the_guides_pitch(semitones: float) -> None:
    played = buzz(220.0)
    wanted = PitchGuide.of(buzz(220.0 * 2 ** (semitones / 12)))
    retuned = retune(played, wanted)
    assert retuned.shape == played.shape
    assert median_semitones(retuned, 220.0) == pytest.approx(semitones, abs=0.25)


def test_retune_plays_the_note_the_input_wavers_around_steadily() -> None:
    wanted = PitchGuide.of(buzz(220.0, vibrato=0.3))  # an A3 sung with vibrato
    f0 = PitchGuide.of(retune(buzz(247.0), wanted)).f0
    cents = 1200 * np.log2(f0[f0 > 0] / 220.0)[10:-10]  # pyin's edge frames aside
    assert abs(np.median(cents)) < 15 and np.percentile(np.abs(cents), 90) < 20


def test_retune_keeps_the_octave_the_translation_plays_in() -> None:
    wanted = PitchGuide.of(buzz(2 * 220.0 * 2 ** (1 / 12)))  # an octave and a semitone up
    assert median_semitones(retune(buzz(220.0), wanted), 220.0) == pytest.approx(1.0, abs=0.25)


def test_retune_leaves_the_audio_as_it_was_where_the_input_has_no_pitch() -> None:
    played = buzz(220.0, 0.5)
    silent = PitchGuide(np.zeros(len(played) // 256 + 1), hop=256)
    assert np.allclose(retune(played, silent), played, atol=1e-5)
    assert retune(np.zeros(100, np.float32), silent).shape == (100,)  # shorter than a pitch frame


def test_overlap_add_at_ratio_one_gives_the_audio_back_whatever_its_periods() -> None:
    played = buzz(220.0, 0.5)
    periods = np.repeat([73.0, 80.0, 145.0, 60.0], len(played) // 4)  # voiced, unvoiced, a low note...
    assert np.allclose(overlap_add(played, periods, np.ones(len(played))), played, atol=1e-4)


def test_retune_gives_a_translation_with_no_pitch_the_inputs_note() -> None:
    hiss = (0.1 * np.random.default_rng(0).normal(size=int(1.5 * SAMPLE_RATE))).astype(np.float32)
    assert (PitchGuide.of(hiss).f0 > 0).mean() < 0.1
    f0 = PitchGuide.of(retune(hiss, PitchGuide.of(buzz(330.0)))).f0
    assert (f0 > 0).mean() > 0.8
    assert np.median(np.abs(12 * np.log2(f0[f0 > 0] / 330.0))) < 0.25
