"""How to generate fast on this machine: segments, batch size, dtype and workers.

Generation cost is ``steps x step_time(batch)``, and a step costs a fixed overhead per layer
(Python and kernel launches, about the same at batch 1 and 64) plus the FLOPs of the batch. Long
files are therefore cut into many segments generated side by side, but each segment first pays a
warm-up of one receptive field, so more segments is not always faster: the plan below picks the
number of segments, the dtype and the workers that minimise a cost model measured on a 2-core AMD
EPYC (Zen 4) with torch 2.13 (``python -m bench`` measures it again). The model's constants only
decide *which* plan wins, so a different CPU still gets a sensible plan.

The choice depends only on the file length, the model's sizes, the number of CPU threads torch
may use and whether the CPU has native bf16 dot products (``avx512_bf16`` or ``amx_bf16``) — never
on a timing taken at run time — so the same input, seed and machine give the same output.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cache

import torch

from . import fused
from .config import DEFAULT_MIN_P, DEFAULT_RETUNE, DEFAULT_TEMPERATURE, ModelConfig
from .runtime import native_bf16

DTypeLike = torch.dtype | str
ENGINES = ("fused", "torch")
"""The fused step (one compiled call per latent frame, on the CPU) and torch's."""


@dataclass(frozen=True)
class GenerationOptions:
    """How to turn a latent into audio. ``temperature=0`` means argmax (greedy).

    ``None`` means "choose automatically" (``speed.plan_generation``): the batch size from the
    file's length and the CPU, the dtype from the CPU (bfloat16 where it has native bf16 dot
    products and the batch is large enough to gain), one worker (process or thread) per CPU
    thread torch may use, and the step (``engine``): the fused one (``fused.py``) on a CPU with
    numba, in full blocks of ``fused.ROWS`` rows per worker when the file is long enough, torch's
    batched matmuls elsewhere and where the cost model says they win. The output depends on
    the seed, ``batch_size`` (the segmentation), ``warmup``, ``crossfade``, ``dtype`` and
    ``engine``, never on ``workers``: fix ``batch_size``, ``dtype`` and ``engine`` to get the
    same output on any machine. (The two engines give the same logits to float32 rounding, so
    their outputs differ only where a uniform draw falls within that rounding of a class edge.)
    """

    temperature: float = DEFAULT_TEMPERATURE
    min_p: float = DEFAULT_MIN_P  # drop classes below this share of the most likely one's probability
    follow_pitch: int = 1  # candidates drawn per row, the one in tune with the input kept (1: off)
    retune: bool = DEFAULT_RETUNE  # pull the output's pitch onto the input's after decoding (retune.py)
    seed: int = 0
    batch_size: int | None = None  # segments generated side by side, over all workers
    min_segment_frames: int = 10
    warmup: int | None = None  # samples before each segment's crossfade; None: speed.default_warmup
    crossfade: int = 400  # samples
    dtype: DTypeLike | None = None  # torch.float32, torch.bfloat16, "float32", "bfloat16"
    workers: int | None = None  # workers generating batches side by side, one core each
    device: str = "cpu"
    engine: str | None = None  # "fused" (CPU) or "torch"; None: the plan's choice

    @property
    def pitch_guided(self) -> bool:
        """Whether decoding follows the input's pitch (``follow_pitch`` above 1, or ``retune``),
        so encoding must also track it (``encode_fitted(guide=True)``)."""
        return self.follow_pitch > 1 or self.retune


def resolve_dtype(dtype: DTypeLike | None, default: torch.dtype = torch.float32) -> torch.dtype:
    """``torch.bfloat16``, ``"bf16"``, ``"bfloat16"``, ``"fp32"`` ... -> a torch dtype."""
    if dtype is None:
        return default
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    try:
        return names[dtype.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; choose float32 or bfloat16") from None


@dataclass(frozen=True)
class StepCost:
    """Seconds for one generation step on one core: ``layers * overhead + flops / rate``."""

    layer_overhead: float  # seconds per layer per step, whatever the batch
    flop_rate: float  # FLOP/s reached by the step's matmuls and gates at large batch
    block_rate: float | None = None  # the fused step: FLOP/s of rows in its blocks of fused.ROWS

    @property
    def rate_in_blocks(self) -> float:
        """FLOP/s of the rows that fill blocks of ``fused.ROWS`` (a step without blocks: its rate)."""
        return self.block_rate or self.flop_rate


STEP_COSTS: dict[tuple[str, torch.dtype], StepCost] = {
    ("torch", torch.float32): StepCost(layer_overhead=23e-6, flop_rate=47e9),
    ("torch", torch.bfloat16): StepCost(layer_overhead=79e-6, flop_rate=75e9),
    ("fused", torch.float32): StepCost(layer_overhead=0.2e-6, flop_rate=30e9, block_rate=58e9),
    ("fused", torch.bfloat16): StepCost(layer_overhead=0.4e-6, flop_rate=90e9, block_rate=135e9),
}
"""Fitted on the 2-core EPYC above, one thread, the small decoder at the default temperature
(docs/speed-live.md has the rates). The fused step's small fixed cost per step (the call per
frame, the sampling's loop, rounding the inputs) is spread over its layers; its blocks of
``fused.ROWS`` rows load each weight once for four rows, so from a batch of four per worker it
does the arithmetic faster than torch's matmuls reach before batches of hundreds, whose
warm-up per segment costs more than it saves. Torch's step is what runs where numba is missing."""

MAX_STATE_BYTES = 1024 * 2**20
"""Decoder state (rings) allowed for all segments at once: memory stays flat on long files."""


@dataclass(frozen=True)
class Tolerance:
    """How far reduced-precision generation may stray from fp32, teacher-forced on the same
    audio: total-variation distance between the next-sample distributions (mean over samples
    and 99th percentile; a lone sample whose two best classes are nearly tied can flip, so the
    worst one is not bounded), and the change in cross-entropy (nats, relative above 1 nat)."""

    mean_tv: float
    p99_tv: float
    cross_entropy: float


BF16_TOLERANCE = Tolerance(mean_tv=0.01, p99_tv=0.1, cross_entropy=0.02)
"""What bf16 generation guarantees (tests/test_speed.py checks it on a sharp and a broad model).
Measured: mean TV 0.0004-0.003, 99th percentile 0.0006-0.04, cross-entropy within 0.6%."""


def default_warmup(cfg: ModelConfig) -> int:
    """Samples each segment generates and throws away before its crossfade, unless set.

    A segment starts from silence, as every training segment does, and its warm-up only has to
    make it forget that start before it is heard. Decoders trained longer lean on more of their
    context: half the receptive field was enough for early models and moved a later piano decoder
    by more than ``BF16_TOLERANCE`` (tests/test_speed.py checks the shipped model at this default;
    the figures are in docs/speed.md). Three quarters keeps short files faster than a whole
    receptive field would;
    tests/test_speed.py checks it on the shipped model.
    """
    return cfg.decoder_receptive_field * 3 // 4


def flops_per_sample(cfg: ModelConfig) -> int:
    """Multiply-adds x 2 of one cached step per stream (the conditioning is per frame)."""
    r, s, n = cfg.residual_channels, cfg.skip_channels, cfg.decoder_blocks * cfg.decoder_layers
    layers = n * (2 * r) * (2 * r) + (n - 1) * r * r + n * r * s
    head = s * s + s * cfg.n_classes
    condition = cfg.latent_dim * n * 2 * r / cfg.pool
    return int(2 * (layers + head + condition))


def state_bytes(cfg: ModelConfig, dtype: torch.dtype) -> int:
    """Bytes of ring buffers one segment needs (dilation + 2 slots per layer)."""
    dilations = [2**i for _ in range(cfg.decoder_blocks) for i in range(cfg.decoder_layers)]
    itemsize = torch.empty(0, dtype=dtype).element_size()
    return sum(d + 2 for d in dilations) * cfg.residual_channels * itemsize


def step_seconds(cfg: ModelConfig, dtype: torch.dtype, batch: int, engine: str = "torch") -> float:
    """Modelled time of one step of ``batch`` streams on one core."""
    cost = STEP_COSTS[engine, dtype]
    layers = cfg.decoder_blocks * cfg.decoder_layers + 2  # + the skip matmul and the head
    blocked = batch - batch % fused.ROWS
    work = blocked / cost.rate_in_blocks + (batch - blocked) / cost.flop_rate
    return layers * cost.layer_overhead + flops_per_sample(cfg) * work


@cache
def available_workers() -> int:
    """CPU threads torch may use here (``--threads`` lowers it), at most the usable cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), cores))


@dataclass(frozen=True)
class GenerationPlan:
    """How one file is generated: ``segments`` of ``segment_frames`` frames, split into
    ``batches`` (segment indices) run by ``workers`` workers in ``dtype`` with ``engine``'s step."""

    engine: str
    dtype: torch.dtype
    workers: int
    segments: int
    segment_frames: int
    warmup: int  # samples generated and discarded before each segment's crossfade
    crossfade: int  # samples
    batches: tuple[tuple[int, ...], ...]
    seconds: float  # modelled wall time

    @property
    def batch_size(self) -> int:
        """Segments in the largest batch: what one worker steps at once."""
        return max(len(b) for b in self.batches)

    def describe(self) -> str:
        name = str(self.dtype).removeprefix("torch.")
        return (
            f"{self.segments} segments of {self.segment_frames} frames, {self.workers} worker(s) "
            f"x batch {self.batch_size}, {name} {self.engine} step, warm-up {self.warmup}, "
            f"crossfade {self.crossfade}"
        )


def _split(segments: int, workers: int) -> tuple[tuple[int, ...], ...]:
    """Consecutive segments in ``workers`` batches whose sizes differ by at most one."""
    size, extra = divmod(segments, workers)
    batches, start = [], 0
    for i in range(workers):
        stop = start + size + (i < extra)
        batches.append(tuple(range(start, stop)))
        start = stop
    return tuple(b for b in batches if b)


def plan_generation(
    cfg: ModelConfig,
    frames: int,
    options: GenerationOptions,
    workers: int | None = None,
    bf16: bool | None = None,
    candidates: int = 1,
) -> GenerationPlan:
    """The fastest plan (by the cost model) for ``frames`` latent frames, within ``options``.

    Fields of ``options`` that are set (``batch_size``, ``dtype``, ``workers``) are kept;
    ``workers`` and ``bf16`` here override what this machine reports (for tests and benchmarks).
    ``candidates``: decoder states each segment holds (pitch-guided sampling draws that many
    rows per segment), counted against ``MAX_STATE_BYTES``.
    """
    pool = cfg.pool
    crossfade = max(0, options.crossfade)
    warmup = max(0, default_warmup(cfg) if options.warmup is None else options.warmup)
    on_cpu = options.device == "cpu"
    if options.workers is not None:
        workers = options.workers
    elif workers is None:
        workers = available_workers() if on_cpu else 1
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if options.dtype is not None:
        dtypes = [resolve_dtype(options.dtype)]
    elif on_cpu and (native_bf16() if bf16 is None else bf16):
        dtypes = [torch.float32, torch.bfloat16]
    else:
        dtypes = [torch.float32]
    steps_to_try = _steps_to_try(options, dtypes, on_cpu)
    min_frames = max(1, options.min_segment_frames)
    if options.batch_size is not None:
        if options.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {options.batch_size}")
        counts = [options.batch_size]
    else:
        counts = list(range(1, max(1, frames // min_frames) + 1))
    best: GenerationPlan | None = None
    for engine, dtype in steps_to_try:
        most = max(1, MAX_STATE_BYTES // (state_bytes(cfg, dtype) * candidates))
        for wanted in counts:
            if options.batch_size is None and wanted > most:
                break
            segment_frames = max(min_frames, math.ceil(frames / wanted))
            segments = math.ceil(frames / segment_frames)
            batches = _split(segments, min(workers, segments))
            steps = warmup + crossfade + segment_frames * pool
            seconds = steps * step_seconds(cfg, dtype, max(len(b) for b in batches), engine)
            if best is None or seconds < best.seconds:
                best = GenerationPlan(
                    engine, dtype, len(batches), segments, segment_frames, warmup, crossfade, batches, seconds
                )
    assert best is not None
    return best


def _steps_to_try(
    options: GenerationOptions, dtypes: list[torch.dtype], on_cpu: bool
) -> list[tuple[str, torch.dtype]]:
    """(engine, dtype) pairs the plan may choose from: the fused step runs on the CPU."""
    if options.engine is not None and options.engine not in ENGINES:
        raise ValueError(f"unknown engine {options.engine!r}; choose {' or '.join(ENGINES)}")
    pairs = [("torch", dtype) for dtype in dtypes]
    if on_cpu and fused.available():
        pairs = [("fused", dtype) for dtype in dtypes if dtype in fused.DTYPES] + pairs
    if options.engine is None:
        return pairs
    chosen = [pair for pair in pairs if pair[0] == options.engine]
    if not chosen:
        raise ValueError(
            f"the {options.engine} step cannot run {', '.join(map(str, dtypes))} on {options.device}"
        )
    return chosen
