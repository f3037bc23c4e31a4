"""Generation speed: samples/s and real-time factor of the cached step, against naive recompute.

For the paper and small presets and the shipped default model, at batch 1, 16, 64, 256, 512, in
float32 and bfloat16, on one worker and on two (each worker steps its own batch of that size in
its own forked process, one intra-op thread each — what ``generate`` does). The time counts
sampling but not allocating the state. "Naive" recomputes the decoder over its whole receptive field for every
sample (batch 1, one thread), the baseline the cached step exists to beat; it is measured in the
same run, on a few hundred samples at most.
"""

from __future__ import annotations

import math
import time

import torch

from musictranslate.config import SAMPLE_RATE
from musictranslate.generate import FastDecoder, Sampler
from musictranslate.model import START_CLASS, Decoder
from musictranslate.speed import flops_per_sample, step_seconds
from musictranslate.workers import run_workers

from . import BenchModel, Stopwatch, bench_models, best_of, rate, realtime, table

BATCHES = (1, 16, 64, 256, 512)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def cached_rate(fast: FastDecoder, dtype: torch.dtype, batch: int, workers: int, seconds: float) -> float:
    """Samples/s of ``workers`` workers each generating ``batch`` streams for about ``seconds``."""
    cfg = fast.cfg
    steps = int(min(4000, max(16, seconds / step_seconds(cfg, dtype, batch))))
    latent = torch.randn(batch, cfg.latent_dim, steps // cfg.pool + 2)
    fast.weights(dtype)  # converted once, outside the timing

    def run(job: int) -> tuple[float, float]:
        """When this worker's sampling started (its state allocated) and ended."""
        start = [0.0]

        def started(t: int) -> None:
            if t == 0:
                start[0] = time.perf_counter()

        sampler = Sampler(1.0, job, streams=range(batch))
        fast.sample(latent, steps, sampler, dtype=dtype, on_frame=started)
        return start[0], time.perf_counter()

    spans = run_workers(run, workers, workers)
    return workers * batch * steps / (max(end for _, end in spans) - min(start for start, _ in spans))


@torch.inference_mode()
def naive_rate(decoder: Decoder, samples: int, seconds: float) -> tuple[float, int]:
    """Samples/s generating one stream by running the full decoder over the receptive field for
    every new sample; stops after ``samples`` samples or ``seconds``."""
    cfg = decoder.cfg
    field = cfg.decoder_receptive_field
    window = torch.full((1, field), START_CLASS, dtype=torch.long)
    latent = torch.randn(1, cfg.latent_dim, math.ceil(field / cfg.pool))
    sampler = Sampler(1.0, 0)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clock, done = Stopwatch(), 0
        while done < samples and clock.seconds < seconds:
            # the last logit predicts the window's last sample from the field before it
            window[:, -1] = sampler(decoder(window, latent)[:, :, -1])
            window = window.roll(-1, dims=1)
            done += 1
        return done / clock.seconds, done
    finally:
        torch.set_num_threads(previous)


def _configs(cores: int) -> list[tuple[str, torch.dtype, int]]:
    return [(f"{name} {w}w", dtype, w) for name, dtype in DTYPES.items() for w in (1, 2) if w <= cores]


def run(quick: bool, limits: dict | None = None) -> dict:
    """Time every configuration; ``limits`` (from ``limits.run``) adds the fraction of the limit."""
    from musictranslate.speed import available_workers

    cores = min(2, available_workers())
    seconds = 0.3 if quick else 0.6
    results: dict = {}
    for model in bench_models(quick):
        twin = next((name for name, r in results.items() if r["config"] == model.config.to_dict()), None)
        if twin is not None:  # speed depends on the sizes only: do not time the same sizes twice
            results[model.name] = {**results[twin], "note": f"{model.note}; same sizes as {twin}"}
            print(f"\ngeneration: {model.name} ({model.note}) has the {twin} sizes: see {twin}")
            continue
        results[model.name] = _bench_model(model, cores, seconds, quick, limits)
    return results


def _bench_model(model: BenchModel, cores: int, seconds: float, quick: bool, limits: dict | None) -> dict:
    cfg = model.config
    fast = FastDecoder(model.decoder)
    flops = flops_per_sample(cfg)
    naive, naive_samples = naive_rate(model.decoder, 32 if quick else 300, 3 if quick else 8)
    cells = []
    for batch in BATCHES[:2] if quick else BATCHES:
        measures = {
            label: (lambda d=dtype, w=w, b=batch: cached_rate(fast, d, b, w, seconds))
            for label, dtype, w in _configs(cores)
        }
        for label, value in best_of(1 if quick else 2, measures).items():
            dtype_name, workers = label.split()[0], int(label.split()[1][:-1])
            limit = (limits or {}).get(dtype_name, {}).get(str(workers))
            cells.append(
                {
                    "batch": batch,
                    "dtype": dtype_name,
                    "workers": workers,
                    "samples_per_second": value,
                    "realtime": value / SAMPLE_RATE,
                    "gflops": value * flops / 1e9,
                    "fraction_of_limit": value * flops / limit if limit else None,
                    "speedup_vs_naive": value / naive,
                }
            )
    rows = [
        (
            c["batch"],
            c["dtype"],
            c["workers"],
            rate(c["samples_per_second"]),
            realtime(c["samples_per_second"]),
            f"{c['gflops']:.1f}",
            "-" if c["fraction_of_limit"] is None else f"{c['fraction_of_limit']:.0%}",
            f"{c['speedup_vs_naive']:,.0f}x",
        )
        for c in cells
    ]
    title = (
        f"generation: {model.name} ({model.note}; {flops / 1e6:.2f} MFLOP/sample); "
        f"naive recompute {naive:.1f} samples/s over {naive_samples} samples"
    )
    header = ("batch", "dtype", "workers", "samples/s", "x real time", "GFLOP/s", "of limit", "vs naive")
    table(title, header, rows)
    return {
        "note": model.note,
        "config": cfg.to_dict(),
        "mflop_per_sample": flops / 1e6,
        "naive": naive,
        "naive_samples": naive_samples,
        "cells": cells,
    }
