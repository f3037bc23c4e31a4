"""The machine's limit: the FLOP/s a large matrix multiply reaches, per dtype and core count.

Generation is a chain of matmuls, so a large GEMM's rate is the ceiling it can approach; the
generation benchmark reports each configuration as a fraction of the limit for the same dtype
and the same number of cores. Two cores are measured both ways — one matmul on two intra-op
threads, and two one-thread matmuls side by side (what generation's workers do) — and the
better counts as the limit.
"""

from __future__ import annotations

import time

import torch

from musictranslate.workers import run_workers

from . import best_of, table

SIZE = 1024
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _gemm_rate(dtype: torch.dtype, workers: int, threads: int, seconds: float) -> float:
    """Aggregate FLOP/s of ``workers`` concurrent ``SIZE``-cubed matmuls."""
    a = [torch.randn(SIZE, SIZE).to(dtype) for _ in range(workers)]
    b = [torch.randn(SIZE, SIZE).to(dtype) for _ in range(workers)]
    out = [torch.empty(SIZE, SIZE, dtype=dtype) for _ in range(workers)]
    deadline = time.perf_counter() + seconds

    def run(job: int) -> int:
        """Matmuls done before the deadline (a forked worker's counts come back as results)."""
        torch.mm(a[job], b[job], out=out[job])  # warm: packing buffers, thread pool
        count = 0
        while time.perf_counter() < deadline:
            torch.mm(a[job], b[job], out=out[job])
            count += 1
        return count

    start = time.perf_counter()
    if workers == 1:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            counts = [run(0)]
        finally:
            torch.set_num_threads(previous)
    else:
        counts = run_workers(run, workers, workers)
    return sum(counts) * 2 * SIZE**3 / (time.perf_counter() - start)


def run(quick: bool) -> dict:
    """``{"float32": {"1": flops, "2": flops}, ...}``: the best rate on 1 and 2 cores."""
    from musictranslate.speed import available_workers

    cores = available_workers()
    seconds = 0.5 if quick else 1.5
    results: dict[str, dict[str, float]] = {}
    rows = []
    for name, dtype in DTYPES.items():
        measures = {"1 thread": lambda d=dtype: _gemm_rate(d, 1, 1, seconds)}
        if cores >= 2:
            measures["2 intra-op threads"] = lambda d=dtype: _gemm_rate(d, 1, 2, seconds)
            measures["2 workers x 1 thread"] = lambda d=dtype: _gemm_rate(d, 2, 1, seconds)
        best = best_of(1 if quick else 2, measures)
        two = max(best.get("2 intra-op threads", 0.0), best.get("2 workers x 1 thread", 0.0))
        results[name] = {"1": best["1 thread"], "2": two, "detail": best}
        rows += [(name, config, f"{flops / 1e9:.1f}") for config, flops in best.items()]
    table(f"GEMM limit ({SIZE}^3 matmul, GFLOP/s)", ("dtype", "config", "GFLOP/s"), rows)
    return results
