"""Live translation on one core: the batch-1 decoder step, and a sustained live run.

The step: samples/s of one stream on one thread with the torch step (``FastDecoder.step``, a
chain of small torch calls) and the fused step (``fused.py``, one compiled call per frame) with
its matrices in float32 and in bfloat16, next to the limit its arithmetic allows on this core
(the 1-thread GEMM rate from ``limits.py`` over the step's FLOPs per sample), all measured in
the same run and interleaved.

The live run: ``musictranslate live``'s loop (``live.run_live``) over a generated tune, timed as
if the tune arrived in real time: the sustained real-time factor (wall and per CPU second),
the measured latency (p50, p99, max), its jitter and the underruns.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from musictranslate.config import DEFAULT_TEMPERATURE, SAMPLE_RATE
from musictranslate.generate import FastDecoder, Sampler
from musictranslate.speed import flops_per_sample

from . import best_of, default_model_folder, model_label, rate, realtime, table
from .translate import melody


class _Discard:
    """A sink that keeps nothing: the live run's cost without the cost of storing it."""

    def write(self, audio: np.ndarray) -> None:
        pass

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass


STEPS = {
    "torch": ("torch", torch.float32),
    "fused": ("fused", torch.float32),
    "fused bf16": ("fused", torch.bfloat16),
}
"""The steps timed: name -> (engine, dtype). Live uses the plan's choice of the last two."""


def step_rate(fast: FastDecoder, engine: str, dtype: torch.dtype, seconds: float, batch: int = 1) -> float:
    """Samples/s of ``batch`` streams together, one thread, for about ``seconds`` (sampling at the
    default temperature included)."""
    cfg = fast.cfg
    steps = max(cfg.pool, int(seconds * (30_000 if engine == "fused" else 5_000 * batch**0.5)) // batch)
    latent = torch.randn(batch, cfg.latent_dim, steps // cfg.pool + 2)
    if engine == "fused":
        fast.fused(dtype)  # compiled (or loaded from the cache) outside the timing
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        fast.sample(
            latent, steps, Sampler(DEFAULT_TEMPERATURE, 0, streams=range(batch)), dtype=dtype, engine=engine
        )
        return batch * steps / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


BATCHES = {"fused": (1, 4, 8, 16), "torch": (16, 64, 256)}
"""Batches each step is timed at, per worker: the fused step's blocks of four rows, and torch's
matmuls, whose per-layer overhead only pays off at the larger ones (``speed.STEP_COSTS`` is
fitted to these)."""


def batched_rates(fast: FastDecoder, seconds: float, quick: bool) -> dict[str, dict[int, float]]:
    """Samples/s of all rows together, one thread, each step at the batches it is planned for."""
    steps = {**STEPS, "torch bf16": ("torch", torch.bfloat16)}
    rates: dict[str, dict[int, float]] = {}
    for name, (engine, dtype) in steps.items():
        batches = BATCHES[engine][1:3] if quick else BATCHES[engine]
        rates[name] = {b: step_rate(fast, engine, dtype, seconds, b) for b in batches}
    every = sorted({b for r in rates.values() for b in r})
    header = ("step", *(f"batch {b}" for b in every))
    rows = [(name, *(rate(r[b]) if b in r else "-" for b in every)) for name, r in rates.items()]
    table("batched step, one thread, samples/s of all rows together", header, rows)
    return rates


def first_use_seconds() -> float:
    """Seconds to load the fused step's compiled code in a fresh process (what a user's first
    call after start-up pays; the very first after install also compiles it)."""
    import subprocess
    import sys

    code = (
        "import time, torch; from musictranslate.config import preset; "
        "from musictranslate.model import Decoder; from musictranslate.generate import FastDecoder; "
        "f = FastDecoder(Decoder(preset('tiny'))); t = time.perf_counter(); f.fused(); "
        "print(time.perf_counter() - t)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def live_run(model, domain: str, seconds: float) -> dict:
    from musictranslate.live import FileSource, run_live
    from musictranslate.stream import TranslationStream

    with tempfile.TemporaryDirectory() as tmp:
        import soundfile as sf

        path = Path(tmp) / "tune.wav"
        sf.write(path, melody(seconds), SAMPLE_RATE)
        source = FileSource(path)
    stream = TranslationStream(domain, model=model, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_live(stream, source, _Discard()).to_dict()  # the encoder's default buffer
    finally:
        torch.set_num_threads(threads)


def run(quick: bool, limits: dict | None = None) -> dict:
    from musictranslate.registry import load_model

    folder = default_model_folder()
    if folder is None:
        print("\nlive: models/default not found; skipped")
        return {}
    model = load_model(str(folder))
    domain = "piano" if "piano" in model.domains else model.domains[0]
    fast = FastDecoder(model.decoder(domain))
    flops = flops_per_sample(model.config)
    first_use = first_use_seconds()
    seconds = 0.5 if quick else 2.0
    measures = {name: (lambda s=step: step_rate(fast, *s, seconds)) for name, step in STEPS.items()}
    rates = best_of(2 if quick else 3, measures)
    gemm = (limits or {}).get("float32", {}).get("1")
    limit = gemm / flops if gemm else None
    rows = [
        (name, rate(value), realtime(value), f"{value * flops / 1e9:.1f}") for name, value in rates.items()
    ]
    if limit:
        rows.append(("limit (1-thread GEMM rate / FLOPs)", rate(limit), realtime(limit), f"{gemm / 1e9:.1f}"))
    title = (
        f"batch-1 step, one thread: {folder.name} {domain} ({flops / 1e6:.2f} MFLOP/sample); fused "
        f"{rates['fused'] / rates['torch']:.1f}x torch, fused bf16 "
        f"{rates['fused bf16'] / rates['fused']:.2f}x fused; loading the compiled step {first_use:.2f} s"
    )
    table(title, ("step", "samples/s", "x real time", "GFLOP/s"), rows)
    batched = batched_rates(fast, seconds, quick)

    audio_seconds = 20.0 if quick else 600.0
    reports = {"shipped": live_run(model, domain, audio_seconds)}
    if "low_latency_encoder" in model.manifest:
        causal = load_model(str(folder), low_latency=True)
        reports["low-latency"] = live_run(causal, domain, audio_seconds)
    table(
        f"live, sustained over {audio_seconds:.0f} s of audio (one thread; input timed as if in real time)",
        (
            "encoder",
            "x real time",
            "per CPU s",
            "algorithmic ms",
            "buffer ms",
            "p50 ms",
            "p99 ms",
            "max ms",
            "jitter ms",
            "underruns",
        ),
        [
            (
                name,
                f"{report['realtime_factor']:.2f}",
                f"{report['cpu_realtime_factor']:.2f}",
                f"{report['algorithmic_latency_ms']:.0f}",
                f"{report['buffer_ms']:.0f}",
                f"{report['latency_p50_ms']:.0f}",
                f"{report['latency_p99_ms']:.0f}",
                f"{report['latency_max_ms']:.0f}",
                f"{report['jitter_ms']:.1f}",
                report["underruns"],
            )
            for name, report in reports.items()
        ],
    )
    return {
        "model": model_label(folder),
        "domain": domain,
        "step": {"samples_per_second": rates, "limit": limit, "first_use_s": first_use},
        "batched": batched,
        "live": {"audio_seconds": audio_seconds, **reports["shipped"]},
        "live_low_latency": reports.get("low-latency"),
    }
