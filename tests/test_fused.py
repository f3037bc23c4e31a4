"""The fused decoder step: the same logits and samples as the torch step, chosen by the plan."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from musictranslate import bf16_dot, encode, fused, load_audio, load_model
from musictranslate.audio import mu_law_encode
from musictranslate.config import SAMPLE_RATE, preset
from musictranslate.fused import compiled
from musictranslate.generate import FastDecoder, GenerationCancelled, Sampler, generate
from musictranslate.model import Decoder
from musictranslate.speed import BF16_TOLERANCE, GenerationOptions, plan_generation

from .golden import WHISTLE


def _decoder(name: str, seed: int) -> Decoder:
    torch.manual_seed(seed)
    decoder = Decoder(preset(name)).eval()
    with torch.no_grad():  # larger than the default init, so the gates leave their linear range
        for p in decoder.parameters():
            p.mul_(3.0)
    return decoder


@pytest.mark.parametrize("name", ["tiny", "shipped"])
def test_fused_step_gives_the_logits_of_the_cached_step(name: str) -> None:
    """A random tiny decoder, and the shipped piano decoder past its receptive field."""
    decoder = _decoder("tiny", 1) if name == "tiny" else load_model("default").decoder("piano")
    fast = FastDecoder(decoder)
    cfg = fast.cfg
    length = 3 * cfg.pool + 17 if name == "tiny" else 2100
    torch.manual_seed(6)
    target = torch.randint(0, cfg.n_classes, (6, length))  # a block of fused.ROWS rows and two more
    latent = torch.randn(6, cfg.latent_dim, length // cfg.pool + 1)
    expected = fast.teacher_forced_logits(target, latent)
    assert torch.allclose(fast.fused().teacher_forced_logits(target, latent), expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_block_of_rows_gives_what_each_row_gives_alone(dtype: torch.dtype) -> None:
    """The blocked products (four rows per weight load) against the same rows stepped one at a
    time: only the order of the sums differs. Where the CPU has bf16 dot products the step also
    rounds its activations to bfloat16, so a float32 rounding apart (torch's conditioning
    projection for four rows or one) can become a bf16 step apart: there the rows keep the bf16
    tolerance of each other."""
    step = FastDecoder(load_model("default").decoder("piano")).fused(dtype)
    torch.manual_seed(3)
    target = torch.randint(0, 256, (5, 1700))
    latent = torch.randn(5, 64, 3)
    together = step.teacher_forced_logits(target, latent)
    alone = torch.cat([step.teacher_forced_logits(target[i : i + 1], latent[i : i + 1]) for i in range(5)])
    if dtype == torch.float32 or not bf16_dot.available():
        assert torch.allclose(together, alone, atol=1e-4, rtol=1e-5)
    else:
        _assert_within_bf16_tolerance(alone, together, target)


def test_bfloat16_fused_step_stays_within_the_bf16_tolerance_on_real_audio() -> None:
    """The shipped piano decoder teacher-forced through 1 s of the example whistle, its own
    latent: bfloat16 weights against float32, within ``speed.BF16_TOLERANCE`` (the bound every
    bf16 path keeps; docs/speed-live.md has the measured distances)."""
    model = load_model("default")
    audio = load_audio(WHISTLE)[SAMPLE_RATE : 2 * SAMPLE_RATE]
    latent = encode(audio, model=model, dtype="float32")[None]
    target = torch.from_numpy(mu_law_encode(audio)).long()[None]
    fast = FastDecoder(model.decoder("piano"))
    with torch.inference_mode():
        exact = fast.fused(torch.float32).teacher_forced_logits(target, latent)
        reduced = fast.fused(torch.bfloat16).teacher_forced_logits(target, latent)
    assert (exact - reduced).abs().max() > 0  # bf16 did run
    _assert_within_bf16_tolerance(exact, reduced, target)


def _assert_within_bf16_tolerance(exact: torch.Tensor, reduced: torch.Tensor, target: torch.Tensor) -> None:
    """``reduced`` logits keep ``speed.BF16_TOLERANCE`` of ``exact`` ``(batch, classes, time)``."""
    distance = 0.5 * (exact.softmax(dim=1) - reduced.softmax(dim=1)).abs().sum(dim=1)
    assert distance.mean().item() <= BF16_TOLERANCE.mean_tv
    assert distance.quantile(0.99).item() <= BF16_TOLERANCE.p99_tv
    ce_exact, ce_reduced = F.cross_entropy(exact, target).item(), F.cross_entropy(reduced, target).item()
    assert abs(ce_reduced - ce_exact) <= BF16_TOLERANCE.cross_entropy * max(ce_exact, 1.0)


def test_fused_pick_draws_what_the_sampler_draws() -> None:
    torch.manual_seed(2)
    logits = torch.randn(3000, 256) * 4
    for temperature, min_p in ((0.0, 0.0), (0.3, 0.0), (1.0, 0.0), (1.0, 0.05), (0.6, 0.3)):
        torch_sampler = Sampler(temperature, 5, min_p=min_p)
        fused_sampler = Sampler(temperature, 5, min_p=min_p)
        expected = torch.stack([torch_sampler(row[None])[0] for row in logits])
        uniforms = fused_sampler.draw(len(logits), 1)
        scratch = np.empty(256, dtype=np.float32)
        picked = [
            compiled().pick(
                row.numpy(),
                np.float32(0 if uniforms is None else uniforms[i, 0]),
                np.float32(temperature),
                np.float32(min_p),
                scratch,
            )
            for i, row in enumerate(logits)
        ]
        assert np.array_equal(np.array(picked), expected.numpy()), (temperature, min_p)


def test_min_p_keeps_only_the_classes_near_the_most_likely() -> None:
    """min-p 0.5 at temperature 1 never draws a class under half the top probability, and
    without it such classes are drawn: the truncation is real, not a no-op."""
    logits = torch.log(torch.tensor([[0.4, 0.3, 0.1, 0.1, 0.1]])).repeat(4000, 1)
    truncated = Sampler(1.0, 1, min_p=0.5)(logits)
    plain = Sampler(1.0, 1)(logits)
    assert set(truncated.tolist()) == {0, 1}
    assert set(plain.tolist()) == {0, 1, 2, 3, 4}


def test_sampler_draw_consumes_the_stream_as_calls_do() -> None:
    one, other = Sampler(1.0, 3, block=10), Sampler(1.0, 3, block=10)
    logits = torch.zeros(2, 4)
    for _ in range(7):
        one(logits)
    other.draw(7, 2)
    assert np.array_equal(one.draw(25, 2), other.draw(25, 2))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fused_generation_is_reproducible_and_follows_the_seed(dtype: str) -> None:
    fast = FastDecoder(_decoder("tiny", 3))
    latent = torch.randn(fast.cfg.latent_dim, 40)
    options = GenerationOptions(batch_size=2, seed=9, engine="fused", temperature=1.0, dtype=dtype)
    first = generate(fast, latent, 40 * fast.cfg.pool, options)
    again = generate(FastDecoder(fast.decoder), latent, 40 * fast.cfg.pool, options)
    other = generate(fast, latent, 40 * fast.cfg.pool, dataclasses.replace(options, seed=10))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_fused_generation_can_be_cancelled() -> None:
    fast = FastDecoder(_decoder("tiny", 4))
    stop = threading.Event()
    stop.set()
    with pytest.raises(GenerationCancelled):
        fast.sample(torch.randn(1, fast.cfg.latent_dim, 5), 300, Sampler(1.0, 0), stop=stop, engine="fused")


def test_plan_takes_the_fused_step_in_full_blocks_and_torch_where_numba_is_missing(monkeypatch) -> None:
    cfg = preset("small")
    short = plan_generation(cfg, 8 * SAMPLE_RATE // cfg.pool, GenerationOptions(), workers=2, bf16=True)
    assert (short.engine, short.dtype) == ("fused", torch.bfloat16) and short.batch_size % fused.ROWS == 0
    exact = plan_generation(cfg, 8 * SAMPLE_RATE // cfg.pool, GenerationOptions(), workers=2, bf16=False)
    assert (exact.engine, exact.dtype) == ("fused", torch.float32)
    many = plan_generation(cfg, 240 * SAMPLE_RATE // cfg.pool, GenerationOptions(), workers=2, bf16=True)
    assert many.engine == "fused" and many.batch_size % fused.ROWS == 0
    monkeypatch.setattr(fused, "available", lambda: False)
    without = plan_generation(cfg, 240 * SAMPLE_RATE // cfg.pool, GenerationOptions(), workers=2, bf16=True)
    assert without.engine == "torch" and without.batch_size > 8
    fixed = plan_generation(cfg, 100, GenerationOptions(engine="torch"), workers=1)
    assert fixed.engine == "torch"
    with pytest.raises(ValueError, match="engine"):
        plan_generation(cfg, 100, GenerationOptions(engine="gpu"))
    with pytest.raises(ValueError, match="fused step cannot run"):
        plan_generation(cfg, 100, GenerationOptions(engine="fused", device="cuda"))


def test_compile_ahead_compiles_every_step_the_plan_may_pick_here() -> None:
    """What ``make install`` runs so that the first translation does not compile."""
    from musictranslate.compile_ahead import compile_ahead
    from musictranslate.runtime import native_bf16

    compiled = compile_ahead()
    assert "fused step (float32)" in compiled and "the input fit" in compiled
    assert ("fused step (bfloat16)" in compiled) == native_bf16()


def test_make_install_compiles_again_when_any_numba_module_changes() -> None:
    """The stamp that says the step is compiled lists every module numba compiles from: a change
    to one it missed (``bf16_dot.py`` once) left the first translation after it compiling."""
    package = Path(fused.__file__).parent
    numba_modules = {
        f"musictranslate/{p.name}"
        for p in package.glob("*.py")
        if re.search(r"^\s*(import numba|from numba)", p.read_text(), re.MULTILINE)
    }
    makefile = (package.parent / "Makefile").read_text()
    rule = re.search(r"^\$\(VENV\)/\.compiled:(.*)$", makefile, re.MULTILINE)
    assert rule and "musictranslate/fused.py" in numba_modules
    assert numba_modules <= set(rule.group(1).split())


def test_bf16_pairs_round_to_nearest_even_as_torch_does() -> None:
    """The native product's input rounding (plain numpy here), odd width and ties included."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 7)).astype(np.float32)
    x[0, :3] = np.array([0x3F808000, 0x3F818000, 0x3F80FFFF], dtype=np.uint32).view(np.float32)  # ties
    words = np.zeros((3, 4), dtype=np.uint32)
    bf16_dot.round_pairs(x, words)
    expected = torch.from_numpy(np.pad(x, ((0, 0), (0, 1)))).bfloat16().view(torch.int16).numpy()
    bits = expected.astype(np.uint16).astype(np.uint32).reshape(3, 4, 2)
    assert np.array_equal(words, (bits[..., 0] << 16) | bits[..., 1])


@pytest.mark.skipif(not bf16_dot.available(), reason="this CPU runs the widening bf16 step already")
def test_the_widening_bf16_step_stays_within_the_bf16_tolerance_too(tmp_path) -> None:
    """A CPU without bf16 dot products widens the stored weights instead: compiled in a process of
    its own (its own numba cache), told the instruction is missing."""
    code = (
        "import torch\n"
        "from musictranslate import bf16_dot, load_model\n"
        "bf16_dot.available = lambda: False\n"
        "from musictranslate.generate import FastDecoder\n"
        "fast = FastDecoder(load_model('default').decoder('piano'))\n"
        "torch.manual_seed(3)\n"
        "target, latent = torch.randint(0, 256, (5, 900)), torch.randn(5, 64, 2)\n"
        "torch.save([fast.fused(d).teacher_forced_logits(target, latent) for d in (torch.float32, "
        f"torch.bfloat16)] + [target], {str(tmp_path / 'logits.pt')!r})\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    exact, widened, target = torch.load(tmp_path / "logits.pt")
    assert (exact - widened).abs().max() > 0
    _assert_within_bf16_tolerance(exact, widened, target)
