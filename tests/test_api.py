"""The library API a user's script calls: load_model, encode, translate."""

from __future__ import annotations

import warnings
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

import musictranslate
from musictranslate import load_model, translate
from musictranslate.audio import companded, mu_law_encode
from musictranslate.errors import AudioError, DomainError
from musictranslate.loudness import loudness_db

from .conftest import tone


@pytest.mark.parametrize("tile", [32768, 37])
def test_chunked_fast_encoding_equals_the_training_encoder(
    registry: Path, monkeypatch: pytest.MonkeyPatch, tile: int
) -> None:
    """Chunks of 7 frames, each layer in one pass or in tiles of 37 samples."""
    model = load_model("tiny", registry)
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, 80 * 57).astype(np.float32)
    monkeypatch.setattr("musictranslate.translation.ENCODE_CHUNK_FRAMES", 7)
    monkeypatch.setattr("musictranslate.fast_encoder.TILE", tile)
    chunked = musictranslate.encode(audio, model=model, dtype="float32")
    with torch.no_grad():
        whole = model.encoder(torch.from_numpy(companded(mu_law_encode(audio)))[None])[0]
    assert chunked.shape == whole.shape == (model.config.latent_dim, 57)
    assert (chunked - whole).abs().max().item() < 1e-5


def test_translate_in_three_lines(registry: Path) -> None:
    model = load_model("tiny", registry)
    out = translate(tone(0.3), "flute", model=model)
    assert out.shape == (4800,) and out.dtype == np.float32


def test_translate_rejects_silence_short_input_and_unknown_domain(registry: Path) -> None:
    model = load_model("tiny", registry)
    with pytest.raises(AudioError, match="silent"):
        translate(np.zeros(16000, np.float32), "piano", model=model)
    with pytest.raises(AudioError, match="too short"):
        translate(tone(0.001), "piano", model=model)
    with pytest.raises(DomainError, match="known: piano, flute"):
        translate(tone(), "oboe", model=model)


def whistled(pitches_hz: list[float], note_seconds: float = 0.4, gain: float = 0.5) -> np.ndarray:
    """A pure-tone melody, like a whistle."""
    return np.concatenate([gain * tone(note_seconds, f) / 0.5 for f in pitches_hz]).astype(np.float32)


def test_fit_input_moves_a_whistle_into_the_training_register_and_level() -> None:
    high = whistled([1046.5, 1174.7, 1318.5, 1174.7, 1046.5] * 2, gain=0.9)
    fitted = musictranslate.fit_input(high, level_db=-20.0)
    assert fitted.semitones == -12
    assert loudness_db(fitted.audio) == pytest.approx(-20.0, abs=0.5)
    pitch = np.nanmedian(librosa.pyin(fitted.audio, fmin=200, fmax=2000, sr=16000)[0])
    assert 12 * np.log2(pitch / 587.3) == pytest.approx(0, abs=0.5)  # D5: an octave below D6
    assert musictranslate.fit_input(whistled([2093.0, 2349.3] * 5), None).semitones == -24
    assert musictranslate.fit_input(high, None, transpose=0).semitones == 0
    assert musictranslate.fit_input(high, None, transpose=-5).semitones == -5


def test_fit_input_shifts_long_inputs_chunk_by_chunk_and_short_ones_quietly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("musictranslate.input_fit.SHIFT_CHUNK_SECONDS", 1.0)  # seams at 1 s and 2 s
    long = whistled([1200.0], note_seconds=3.3)
    shifted = musictranslate.fit_input(long, None, -12).audio
    assert shifted.shape == long.shape and np.isfinite(shifted).all()
    window = np.hanning(2048)
    peaks = [
        np.argmax(np.abs(np.fft.rfft(shifted[s : s + 2048] * window))) * 16000 / 2048
        for s in range(0, 50000, 1000)
    ]
    assert all(abs(12 * np.log2(p / 600.0)) < 0.3 for p in peaks)  # an octave down on both sides of each seam
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert musictranslate.fit_input(whistled([1200.0], note_seconds=0.1), None, -12).audio.shape == (
            1600,
        )


def test_fit_input_leaves_low_melodies_and_unpitched_audio_alone() -> None:
    assert musictranslate.fit_input(whistled([392.0, 440.0, 523.3] * 3), None).semitones == 0
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 4 * 16000).astype(np.float32)
    assert musictranslate.fit_input(noise, None).semitones == 0


def test_fit_input_scales_quiet_and_loud_copies_alike_without_clipping() -> None:
    melody = whistled([392.0, 440.0, 523.3] * 3)
    quiet, loud = (musictranslate.fit_input(g * melody, -20.0, 0).audio for g in (0.05, 0.9))
    np.testing.assert_allclose(quiet, loud, atol=1e-5)
    spiky = melody * 0.01
    spiky[100] = 0.9  # one loud click: the level fit stops at the peak
    assert np.abs(musictranslate.fit_input(spiky, -20.0, 0).audio).max() <= 0.99 + 1e-6
    assert np.array_equal(musictranslate.fit_input(melody, None, 0).audio, melody)


def test_saved_models_carry_a_model_card_that_matches_the_manifest(tmp_path: Path) -> None:
    from .conftest import make_tiny_model

    folder = make_tiny_model(tmp_path / "carded")
    card = (folder / "README.md").read_text()
    assert "# Model `carded`" in card and "piano, flute" in card
    assert "1 blocks x 4 layers, 8 residual / 8 skip channels" in card


def test_a_re_saved_model_keeps_the_hand_written_history_of_its_card(tmp_path: Path) -> None:
    """Training re-renders the card at every checkpoint; the History a person wrote stays."""
    from musictranslate.registry import add_decoder

    from .conftest import make_tiny_model

    folder = make_tiny_model(tmp_path / "m")
    history = "\n## History\n\nStage 1: trained on a laptop; a longer run was tried and not shipped.\n"
    card = folder / "README.md"
    card.write_text(card.read_text() + "\n## Evaluation\n\nstale scores\n" + history)
    make_tiny_model(folder, seed=1)  # a checkpoint re-saves the whole folder
    text = card.read_text()
    assert text.endswith(history) and text.count("## History") == 1
    assert "stale scores" not in text and "# Model `m`" in text
    model = load_model(folder)
    add_decoder(model, "organ", model.decoder("piano"))  # add-domain rewrites the card in place
    text = card.read_text()
    assert text.endswith(history) and "organ" in text.split("## History")[0]
