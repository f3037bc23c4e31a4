"""The cached generator must compute exactly what the teacher-forced decoder computes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from musictranslate.config import preset
from musictranslate.generate import FastDecoder, generate
from musictranslate.model import Decoder
from musictranslate.speed import GenerationOptions


@pytest.mark.parametrize("layers,length", [(4, 300), (10, 1400)])
def test_cached_step_equals_teacher_forced_forward(layers: int, length: int) -> None:
    torch.manual_seed(1)
    cfg = dataclasses.replace(preset("tiny"), decoder_blocks=2, decoder_layers=layers)
    decoder = Decoder(cfg).eval()
    target = torch.randint(0, 256, (3, length))
    latent = torch.randn(3, cfg.latent_dim, -(-length // cfg.pool))
    with torch.no_grad():
        parallel = decoder(target, latent)
    cached = FastDecoder(decoder).teacher_forced_logits(target, latent)
    assert parallel.shape == cached.shape
    assert (parallel - cached).abs().max().item() <= 1e-4


def test_generation_is_seeded_and_has_the_input_length() -> None:
    torch.manual_seed(2)
    cfg = preset("tiny")
    fast = FastDecoder(Decoder(cfg).eval())
    latent = torch.randn(cfg.latent_dim, 37)
    length = 37 * cfg.pool - 13
    options = GenerationOptions(batch_size=4, min_segment_frames=5, seed=7)
    first = generate(fast, latent, length, options)
    assert first.shape == (length,)
    assert np.array_equal(first, generate(fast, latent, length, options))
    assert not np.array_equal(first, generate(fast, latent, length, dataclasses.replace(options, seed=8)))


def test_progress_reaches_total() -> None:
    cfg = preset("tiny")
    fast = FastDecoder(Decoder(cfg).eval())
    seen: list[tuple[int, int]] = []
    generate(
        fast,
        torch.randn(cfg.latent_dim, 30),
        30 * cfg.pool,
        GenerationOptions(batch_size=2),
        lambda d, t: seen.append((d, t)),
    )
    assert seen[-1][0] == seen[-1][1] > 0
    assert all(d <= t for d, t in seen)


@pytest.mark.parametrize("engine", ["torch", "fused"])
def test_min_p_one_samples_the_likeliest_class_as_temperature_zero_does(engine: str) -> None:
    """At min-p 1 only the likeliest class is left, whatever the temperature: on either step the
    output is the greedy one, and a plain temperature-1 sampling is not."""
    torch.manual_seed(3)
    cfg = preset("tiny")
    fast = FastDecoder(Decoder(cfg).eval())
    latent, length = torch.randn(cfg.latent_dim, 6), 6 * cfg.pool
    base = GenerationOptions(batch_size=1, engine=engine, seed=2)

    def run(**change: float) -> np.ndarray:
        return generate(fast, latent, length, dataclasses.replace(base, **change))

    greedy = run(temperature=0.0)
    assert np.array_equal(run(temperature=1.0, min_p=1.0), greedy)
    assert not np.array_equal(run(temperature=1.0), greedy)
