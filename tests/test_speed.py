"""Fast generation: seams, bf16 equivalence, worker threads and the automatic plan."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from musictranslate import encode, load_model, translate
from musictranslate.audio import companded, mu_law_encode
from musictranslate.config import SAMPLE_RATE, preset
from musictranslate.generate import FastDecoder, Sampler, generate
from musictranslate.model import ConfusionNet, Decoder, Encoder
from musictranslate.registry import save_model
from musictranslate.speed import (
    BF16_TOLERANCE,
    MAX_STATE_BYTES,
    GenerationOptions,
    default_warmup,
    plan_generation,
    resolve_dtype,
    state_bytes,
)
from musictranslate.workers import forking

from .conftest import tone

TONE_HZ = 320.0  # 50 samples a period: the tiny model learns it in a few hundred steps


@contextmanager
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: extra threads only add synchronisation
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tone_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset trained for a few seconds to reproduce a sustained tone (its only domain).

    A random model outputs noise, in which no seam could stand out; this one outputs a clean
    tone at temperature 0, so a click at a seam would be the largest jump in the file.
    """
    torch.manual_seed(0)
    cfg = preset("tiny")
    encoder, decoder = Encoder(cfg).eval(), Decoder(cfg)
    target = torch.from_numpy(mu_law_encode(tone(1.0, TONE_HZ)))[None]
    with torch.no_grad():
        latent = encoder(torch.from_numpy(companded(target.numpy())))
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    window = 10  # frames
    with one_thread():
        for _ in range(800):
            start = int(torch.randint(0, latent.shape[2] - window, ()))
            piece = target[:, start * cfg.pool : (start + window) * cfg.pool]
            loss = F.cross_entropy(decoder(piece, latent[:, :, start : start + window]), piece)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert loss.item() < 0.2, "the tiny model did not learn the tone"
    root = tmp_path_factory.mktemp("tone")
    return save_model(
        root / "tone", cfg, encoder, ConfusionNet(cfg, 1), {"tone": decoder.eval()}, {"test": True}
    )


def _jumps(audio: np.ndarray, options: GenerationOptions, pool: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample-to-sample jumps around the seams (crossfade included) and everywhere else."""
    plan = plan_generation(preset("tiny"), len(audio) // pool, options)
    span = plan.segment_frames * pool
    jumps = np.abs(np.diff(audio))
    near = np.zeros(len(jumps), dtype=bool)
    for seam in range(span, len(audio), span):
        near[max(0, seam - plan.crossfade - 2) : seam + 2] = True
    assert 0 < near.sum() < len(near) / 4
    return jumps[near], jumps[~near]


def test_seams_of_a_translated_sustained_tone_do_not_click(tone_model: Path) -> None:
    model = load_model(str(tone_model))
    source = tone(2.0, TONE_HZ)
    # 7 segments meet out of phase; not retuned, whose grains would blur a click at a seam too
    options = GenerationOptions(temperature=0.0, batch_size=7, retune=False)
    out = translate(source, "tone", model=model, options=options)
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(out) - TONE_HZ) < 2  # it is the tone...
    assert out[: len(out) // 2].std() > 0.3 and out[len(out) // 2 :].std() > 0.3  # ... sustained
    seams, elsewhere = _jumps(out, options, model.config.pool)
    assert seams.max() <= elsewhere.max() * 1.05
    # the check has teeth: segments butted together with no warm-up and no crossfade click
    bare = dataclasses.replace(options, warmup=0, crossfade=0)
    clicks, _ = _jumps(translate(source, "tone", model=model, options=bare), bare, model.config.pool)
    assert clicks.max() > 3 * elsewhere.max()


def _total_variation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample total-variation distance between the next-sample distributions."""
    return 0.5 * (a.softmax(dim=1) - b.softmax(dim=1)).abs().sum(dim=1)


@pytest.mark.parametrize("model_kind", ["tone", "small"])
def test_bf16_matches_fp32_within_the_stated_tolerance(model_kind: str, tone_model: Path) -> None:
    if model_kind == "tone":
        decoder = load_model(str(tone_model)).decoder("tone")
    else:
        torch.manual_seed(3)
        decoder = Decoder(preset("small")).eval()
    cfg = decoder.cfg
    target = torch.from_numpy(mu_law_encode(tone(0.1, TONE_HZ)))[None]
    latent = torch.randn(1, cfg.latent_dim, target.shape[1] // cfg.pool)
    with one_thread():
        exact = FastDecoder(decoder, torch.float32).teacher_forced_logits(target, latent)
        reduced = FastDecoder(decoder, "bfloat16").teacher_forced_logits(target, latent)
    distance = _total_variation(exact, reduced)
    assert distance.mean().item() <= BF16_TOLERANCE.mean_tv
    assert distance.quantile(0.99).item() <= BF16_TOLERANCE.p99_tv
    ce_exact, ce_reduced = F.cross_entropy(exact, target).item(), F.cross_entropy(reduced, target).item()
    assert abs(ce_reduced - ce_exact) <= BF16_TOLERANCE.cross_entropy * max(ce_exact, 1.0)


@pytest.mark.parametrize("model_kind", ["tone", "default"])
def test_bf16_encoding_changes_the_output_within_tolerance(model_kind: str, tone_model: Path) -> None:
    model = load_model(str(tone_model) if model_kind == "tone" else "default")
    source = tone(0.5, TONE_HZ)
    exact, reduced = (encode(source, model=model, dtype=dtype) for dtype in ("float32", "bfloat16"))
    assert 0 < (exact - reduced).abs().max() < 0.05 * exact.abs().max()  # bf16 did run, and is close
    decoder = model.decoder(model.domains[0])
    target = torch.from_numpy(mu_law_encode(source))[None]
    with torch.inference_mode():
        distance = _total_variation(decoder(target, exact[None]), decoder(target, reduced[None]))
    assert distance.mean().item() <= BF16_TOLERANCE.mean_tv
    assert distance.quantile(0.99).item() <= BF16_TOLERANCE.p99_tv


def test_the_default_warmup_forgets_a_segment_start_within_tolerance() -> None:
    """Cutting the shipped model's context at the default warm-up barely moves its output."""
    model = load_model("default")
    cfg, pool = model.config, model.config.pool
    melody = np.concatenate([tone(0.6, hz) for hz in (330.0, 392.0, 262.0, 440.0)])
    latent = encode(melody, model=model)[None]
    target = torch.from_numpy(mu_law_encode(melody))[None]
    warmup, heard = default_warmup(cfg), 400  # what a segment throws away, then its crossfade
    full_context = math.ceil(cfg.decoder_receptive_field / pool)
    distances = []
    with torch.inference_mode():
        for frame in (4, 9, 14):  # each cut starts a frame, where a segment's latent starts
            position = frame * pool + warmup
            for domain in model.domains:
                decoder = model.decoder(domain)
                logits = [
                    decoder(target[:, start * pool : position + heard], latent[:, :, start:])[:, :, -heard:]
                    for start in (frame - full_context, frame)
                ]
                distances.append(_total_variation(*logits))
    distance = torch.cat(distances, dim=1)
    assert distance.mean().item() <= BF16_TOLERANCE.mean_tv
    assert distance.quantile(0.99).item() <= BF16_TOLERANCE.p99_tv


def test_output_does_not_depend_on_workers_or_batching() -> None:
    torch.manual_seed(4)
    cfg = preset("tiny")
    fast = FastDecoder(Decoder(cfg).eval())
    latent = torch.randn(cfg.latent_dim, 90)
    options = GenerationOptions(batch_size=6, seed=11)
    one = generate(fast, latent, 90 * cfg.pool, dataclasses.replace(options, workers=1))
    three = generate(fast, latent, 90 * cfg.pool, dataclasses.replace(options, workers=3))
    assert np.array_equal(one, three)
    assert torch.get_num_threads() >= 1


def test_a_failing_worker_stops_the_others_and_the_error_reaches_the_caller() -> None:
    torch.manual_seed(5)
    cfg = dataclasses.replace(preset("tiny"), pool=800)
    fast = FastDecoder(Decoder(cfg).eval())
    real_sample = fast.sample

    def sample(latent: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if latent.shape[0] == 1:  # the one-segment batch fails at once
            raise RuntimeError("worker exploded")
        return real_sample(latent, *args, **kwargs)

    fast.sample = sample  # type: ignore[method-assign]
    threads = torch.get_num_threads()
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="worker exploded"):
        # 3 segments on 2 workers: batches of 2 and 1; the long batch would run ~forever
        generate(
            fast, torch.randn(cfg.latent_dim, 3000), 3000 * 800, GenerationOptions(batch_size=3, workers=2)
        )
    assert time.perf_counter() - started < 20
    assert torch.get_num_threads() == threads  # restored


@pytest.mark.skipif(not forking(), reason="workers are forked processes only on Linux")
def test_a_worker_process_that_dies_gives_an_error_not_a_hang() -> None:
    torch.manual_seed(6)
    cfg = preset("tiny")
    fast = FastDecoder(Decoder(cfg).eval())
    real_sample = fast.sample

    def sample(latent: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if latent.shape[0] == 1:
            os._exit(9)  # what the kernel's OOM killer leaves behind, as far as the parent sees
        return real_sample(latent, *args, **kwargs)

    fast.sample = sample  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="worker process died.*fewer workers"):
        options = GenerationOptions(batch_size=3, workers=2)
        generate(fast, torch.randn(cfg.latent_dim, 30), 30 * cfg.pool, options)


def test_sampler_draws_from_the_softmax() -> None:
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.0, 0.3]])).expand(4000, 4).contiguous()
    counts = torch.bincount(Sampler(1.0, seed=0)(logits), minlength=4).double() / 4000
    assert torch.allclose(counts, torch.tensor([0.1, 0.6, 0.0, 0.3], dtype=torch.float64), atol=0.03)
    assert counts[2] == 0
    assert torch.equal(Sampler(0.0, seed=0)(logits), torch.ones(4000, dtype=torch.long))


def test_dtype_names() -> None:
    assert resolve_dtype("bf16") is resolve_dtype("bfloat16") is torch.bfloat16
    assert resolve_dtype(None) is resolve_dtype("float32") is torch.float32
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        resolve_dtype("float16")


FRAMES_60S = 60 * SAMPLE_RATE // 800


def test_plan_uses_bf16_and_big_batches_for_the_paper_model_on_a_bf16_cpu() -> None:
    cfg = preset("paper")
    plan = plan_generation(cfg, FRAMES_60S, GenerationOptions(engine="torch"), workers=2, bf16=True)
    assert plan.dtype is torch.bfloat16 and plan.workers == 2
    assert plan.batch_size >= 32
    assert plan.segments * state_bytes(cfg, plan.dtype) <= MAX_STATE_BYTES
    assert plan_generation(cfg, FRAMES_60S, GenerationOptions(), workers=2, bf16=False).dtype is torch.float32


def test_plan_keeps_fp32_where_bf16_overhead_outweighs_its_gain() -> None:
    """Torch's bf16 step pays a larger per-layer overhead (the fused step's bf16 has none)."""
    plan = plan_generation(
        preset("small"), 10 * SAMPLE_RATE // 800, GenerationOptions(engine="torch"), workers=2, bf16=True
    )
    assert plan.dtype is torch.float32


@pytest.mark.parametrize("seconds", [0.5, 10, 60, 240])
def test_plan_covers_the_file_and_memory_stays_bounded(seconds: float) -> None:
    cfg = preset("small")
    frames = int(seconds * SAMPLE_RATE / cfg.pool)
    plan = plan_generation(cfg, frames, GenerationOptions(), workers=2, bf16=True)
    assert plan.segments * plan.segment_frames >= frames > (plan.segments - 1) * plan.segment_frames
    assert sorted(i for batch in plan.batches for i in batch) == list(range(plan.segments))
    assert plan.workers == len(plan.batches) <= 2
    assert plan.segments * state_bytes(cfg, plan.dtype) <= MAX_STATE_BYTES
    assert plan.warmup == default_warmup(cfg) and plan.crossfade == 400


def test_pitch_guided_candidates_count_against_the_state_bound() -> None:
    """Each guided segment holds one state per candidate: a 10-minute file at 8 candidates
    planned as a plain one would hold 1.5 GB of rings."""
    cfg = preset("small")
    plan = plan_generation(cfg, 600 * 20, GenerationOptions(), workers=2, bf16=True, candidates=8)
    assert plan.segments * 8 * state_bytes(cfg, plan.dtype) <= MAX_STATE_BYTES
    assert plan.segments * plan.segment_frames >= 600 * 20


def test_plan_grows_the_batch_with_the_file() -> None:
    cfg = preset("small")
    sizes = [
        plan_generation(cfg, s * 20, GenerationOptions(), workers=2, bf16=False).segments
        for s in (10, 60, 240)
    ]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_plan_keeps_what_the_options_fix() -> None:
    cfg = preset("small")
    options = GenerationOptions(batch_size=7, dtype="bf16", workers=3, warmup=100, crossfade=50)
    plan = plan_generation(cfg, 1000, options, workers=2, bf16=False)
    assert (plan.segments, plan.dtype, plan.workers, plan.warmup, plan.crossfade) == (
        7,
        torch.bfloat16,
        3,
        100,
        50,
    )
    few = plan_generation(cfg, 25, GenerationOptions(batch_size=64), workers=2)
    assert few.segments == 3 and few.workers == 2  # min_segment_frames=10 bounds the count
    with pytest.raises(ValueError, match="workers"):
        plan_generation(cfg, 100, GenerationOptions(workers=0))
