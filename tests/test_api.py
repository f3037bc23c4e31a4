"""The library API a user's script calls: load_model, encode, translate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import musictranslate
from musictranslate import load_model, translate
from musictranslate.audio import companded, mu_law_encode
from musictranslate.errors import AudioError, DomainError

from .conftest import tone


def test_chunked_fast_encoding_equals_the_training_encoder(
    registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load_model("tiny", registry)
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, 80 * 57).astype(np.float32)
    monkeypatch.setattr("musictranslate.translation.ENCODE_CHUNK_FRAMES", 7)
    chunked = musictranslate.encode(model, audio, dtype="float32")
    with torch.no_grad():
        whole = model.encoder(torch.from_numpy(companded(mu_law_encode(audio)))[None])[0]
    assert chunked.shape == whole.shape == (model.config.latent_dim, 57)
    assert (chunked - whole).abs().max().item() < 1e-5


def test_translate_in_three_lines(registry: Path) -> None:
    model = load_model("tiny", registry)
    out = translate(tone(0.3), "flute", model)
    assert out.shape == (4800,) and out.dtype == np.float32


def test_translate_rejects_silence_short_input_and_unknown_domain(registry: Path) -> None:
    model = load_model("tiny", registry)
    with pytest.raises(AudioError, match="silent"):
        translate(np.zeros(16000, np.float32), "piano", model)
    with pytest.raises(AudioError, match="too short"):
        translate(tone(0.001), "piano", model)
    with pytest.raises(DomainError, match="known: piano, flute"):
        translate(tone(), "oboe", model)


def test_saved_models_carry_a_model_card_that_matches_the_manifest(tmp_path: Path) -> None:
    from .conftest import make_tiny_model

    folder = make_tiny_model(tmp_path / "carded")
    card = (folder / "README.md").read_text()
    assert "# Model `carded`" in card and "piano, flute" in card
    assert "1 blocks x 4 layers, 8 residual / 8 skip channels" in card
