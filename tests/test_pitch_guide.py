"""Pitch-guided sampling: the choice among candidates, and how generation uses it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from musictranslate.config import SAMPLE_RATE, preset
from musictranslate.generate import FastDecoder, FrameStepper, Sampler, generate
from musictranslate.model import Decoder
from musictranslate.pitch_guide import CHUNK, PitchGuide, choose
from musictranslate.speed import GenerationOptions


def sine(hz: float, start: int, count: int) -> np.ndarray:
    return np.sin(2 * np.pi * hz * (start + np.arange(count)) / SAMPLE_RATE).astype(np.float32)


def test_choose_keeps_the_candidate_at_the_wanted_pitch_not_its_neighbours() -> None:
    history = sine(440.0, 0, 512)
    for wanted in (415.3, 440.0, 466.2):  # a semitone apart: periodicity alone hardly tells them apart
        candidates = np.stack([sine(hz, 512, CHUNK) for hz in (415.3, 440.0, 466.2)])
        picked = choose(sine(wanted, 0, 512), candidates, SAMPLE_RATE / wanted)
        assert picked == [415.3, 440.0, 466.2].index(wanted)
    noise = np.random.default_rng(0).normal(size=CHUNK).astype(np.float32)
    assert choose(history, np.stack([noise, sine(440.0, 512, CHUNK)]), SAMPLE_RATE / 440.0) == 1


def test_unvoiced_stretches_keep_the_first_candidate() -> None:
    guide = PitchGuide(np.array([0.0, 0.0, 440.0, 440.0, 440.0, 0.0]), hop=100)
    assert guide.period(0, 200) == 0.0  # nothing voiced
    assert guide.period(200, 300) == pytest.approx(SAMPLE_RATE / 440.0)
    candidates = np.stack([sine(300.0, 0, CHUNK), sine(440.0, 0, CHUNK)])
    assert choose(np.zeros(0, np.float32), candidates, guide.period(0, 200)) == 0


@pytest.mark.parametrize("engine", ["torch", "fused"])
def test_reorder_makes_rows_go_on_from_the_chosen_one(engine: str) -> None:
    """After ``reorder([1, 1])`` both rows hold row 1's whole history: the next logits agree
    exactly (the fused step's layer 0 reads the last two classes, both must move)."""
    torch.manual_seed(4)
    cfg = preset("tiny")
    fast = FastDecoder(Decoder(cfg).eval())
    stepper = FrameStepper(fast, 2, Sampler(1.0, 0), engine=engine)
    stepper.run(torch.randn(2, cfg.latent_dim), cfg.pool)  # two different pasts
    stepper.reorder(np.array([1, 1]))
    frame = torch.randn(1, cfg.latent_dim).expand(2, -1)
    if engine == "fused":
        logits = np.empty((2, 3, cfg.n_classes), dtype=np.float32)
        stepper.fused.project_condition(stepper.state, frame)
        stepper.fused.run(stepper.state, 3, None, 0.0, 0.0, None, logits)
        assert np.array_equal(logits[0], logits[1])
    else:
        fast.project_condition(stepper.state, frame)
        logits = fast.step(stepper.state, stepper.t, stepper.previous)
        assert torch.equal(logits[0], logits[1])


@pytest.mark.parametrize("engine", ["torch", "fused"])
def test_guided_generation_is_plain_sampling_where_the_input_has_no_pitch(engine: str) -> None:
    torch.manual_seed(5)
    cfg = preset("tiny")
    fast = FastDecoder(Decoder(cfg).eval())
    frames = 12
    latent, length = torch.randn(cfg.latent_dim, frames), frames * cfg.pool
    plain = GenerationOptions(temperature=1.0, seed=3, batch_size=2, min_segment_frames=5, engine=engine)
    guided = dataclasses.replace(plain, follow_pitch=4)
    silent = PitchGuide(np.zeros(length // 100 + 1), hop=100)
    expected = generate(fast, latent, length, plain)
    assert np.array_equal(generate(fast, latent, length, guided, guide=silent), expected)
    assert np.array_equal(generate(fast, latent, length, guided), expected)  # no guide: not guided
    voiced = PitchGuide(np.full(length // 100 + 1, 440.0), hop=100)
    steered = generate(fast, latent, length, guided, guide=voiced)
    assert not np.array_equal(steered, expected)
    assert np.array_equal(generate(fast, latent, length, guided, guide=voiced), steered)  # seeded
