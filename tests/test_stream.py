"""The streaming API: chunking never changes the output, and the encoder's maths is kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from musictranslate import TranslationStream, load_model
from musictranslate.audio import companded, mu_law_encode
from musictranslate.fast_encoder import FastEncoder
from musictranslate.stream import StreamingEncoder

from .conftest import tone


def _translate_in_chunks(model, audio: np.ndarray, chunk: int, seed: int = 4) -> np.ndarray:
    stream = TranslationStream("piano", model=model, temperature=1.0, seed=seed, block=40)
    pieces = [stream.process(audio[i : i + chunk]) for i in range(0, len(audio), chunk)]
    return np.concatenate([*pieces, stream.flush()])


def test_output_does_not_depend_on_the_chunking(registry: Path) -> None:
    model = load_model(registry / "tiny")
    audio = tone(0.6, 300.0) * np.linspace(0.2, 1.0, 9600, dtype=np.float32)
    whole = _translate_in_chunks(model, audio, len(audio))
    assert len(whole) == len(audio) and np.abs(whole).max() > 0
    for chunk in (1, 37, 4000):
        assert np.array_equal(_translate_in_chunks(model, audio, chunk), whole), chunk
    assert not np.array_equal(_translate_in_chunks(model, audio, 37, seed=5), whole)


def test_streaming_encoder_gives_the_offline_features(registry: Path) -> None:
    model = load_model(registry / "tiny")
    signal = torch.from_numpy(companded(mu_law_encode(tone(0.2, 500.0))))
    offline = FastEncoder(model.encoder).features(signal)
    streaming = StreamingEncoder(FastEncoder(model.encoder), block=32)
    rows = []
    for start in range(0, len(signal) - 31, 32):
        position, features = streaming.step(signal[start : start + 32])
        rows.append(features[max(0, -position) :] if position + 32 > 0 else features[:0])
    got = torch.cat(rows)
    # the offline encoder zero-pads after the end: only positions a look-ahead before it agree
    valid = len(signal) - streaming.lookahead
    assert len(got) >= valid > 0
    assert torch.allclose(got[:valid], offline[:valid], atol=1e-5)


def test_latency_is_a_frame_the_lookahead_and_a_block(registry: Path) -> None:
    model = load_model(registry / "tiny")
    stream = TranslationStream("piano", model=model, block=40)
    cfg = model.config
    assert stream.latency_samples == cfg.pool + cfg.encoder_context + 40 - 1
    first = stream.process(np.zeros(cfg.pool + cfg.encoder_context - 1, dtype=np.float32))
    assert len(first) == 0  # the first frame needs its whole look-ahead
    assert len(stream.process(np.zeros(40, dtype=np.float32))) == cfg.pool


def test_unknown_domain_is_refused(registry: Path) -> None:
    with pytest.raises(Exception, match="organ"):
        TranslationStream("organ", model=load_model(registry / "tiny"))
