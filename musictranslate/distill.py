"""A low-latency encoder for ``live``: a causal copy of a model's encoder, taught its latent.

The shipped encoder is non-causal: a latent frame hears ``cfg.encoder_context`` samples (128 ms
for the default model) after its own end, so a live stream waits that long before it can play
the frame. The causal encoder (``Encoder(cfg, causal=True)``) has the same weights' shapes with
every conv looking only back. Started from the shipped weights it computes the shipped features
exactly, delayed by the look-ahead; trained here to predict the shipped latent of each frame
from the audio up to the frame's end (mean squared error against the frozen shipped encoder),
it drives the unchanged decoders, so only the encoder is trained and nothing about the
decoders, the confusion net or the classifier changes.

What it costs in quality is measured by ``make evaluate-default`` with ``--low-latency`` (the
model card and docs/speed-live.md have the figures).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import SAMPLE_RATE
from .data import Augmentation, DataError, DomainBatches, open_sources, scan_domains, split_files
from .errors import DivergedError, UsageError
from .manifest import LOW_LATENCY
from .model import Encoder
from .registry import Model, load_model, recorded_path, set_low_latency_encoder
from .runtime import native_bf16, seed_everything

StepCallback = Callable[[int, int, dict], None]


@dataclass(frozen=True)
class DistillOptions:
    """How long and how to train the causal encoder."""

    steps: int = 400
    batch_size: int = 8
    frames: int = 20  # latent frames per segment that the loss reads (1 s for the default model)
    lr: float = 3e-4
    warmup: int = 20  # steps over which the learning rate ramps up from zero
    seed: int = 0
    checkpoint_every: int = 25  # steps between writes of the encoder into the model folder
    val_batches: int = 4
    bf16: bool | None = None  # autocast the student in bfloat16; None: where the CPU has native bf16
    fresh: bool = False  # start again from the shipped encoder, not from the model's causal one

    def check(self) -> None:
        for name in ("steps", "batch_size", "frames", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be above 0, got {self.lr}")


@dataclass(frozen=True)
class DistillResult:
    steps: int
    val_error: float  # held-out squared error / variance of the shipped latent (0: exact)
    start_val_error: float  # the same before training
    seconds: float


def relative_error(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Squared error over the teacher's variance about its mean per channel: 1 - R^2."""
    centred = teacher - teacher.mean(dim=(0, 2), keepdim=True)
    return (student - teacher).square().mean() / centred.square().mean().clamp_min(1e-12)


class _Segments:
    """Loss frames in the middle of each drawn segment, with the context either encoder needs
    before and after them (so neither reads its zero padding inside the frames)."""

    def __init__(self, teacher: Encoder, student: Encoder, frames: int) -> None:
        pool = teacher.cfg.pool
        self.before = math.ceil(max(teacher.context[0], student.context[0]) / pool)
        self.after = math.ceil(max(teacher.context[1], student.context[1]) / pool)
        self.frames, self.samples = frames, (self.before + frames + self.after) * pool

    def loss_frames(self, latent: torch.Tensor) -> torch.Tensor:
        return latent[:, :, self.before : self.before + self.frames]


def _domain_sources(data: str | Path, seed: int, samples: int) -> tuple[list, list]:
    """Training and validation sources of each domain folder in ``data`` (empty ones left out)."""
    found = scan_domains(data)
    train, val = [], []
    for files in found.values():
        split = split_files(files, seed)
        train.append(open_sources(split["train"], samples)[0])
        val.append(open_sources(split["val"], samples)[0])
    if not any(train):
        raise DataError(f"{data}: no audio file is at least {samples / SAMPLE_RATE:.2f} s long")
    return [s for s in train if s], [s for s in val if s]


def distill(
    model: Model,
    data: str | Path,
    options: DistillOptions = DistillOptions(),
    on_step: StepCallback | None = None,
) -> DistillResult:
    """Train ``model``'s low-latency encoder on the audio in ``data`` (a folder of domain
    folders, as ``train`` takes; any music will do, since the target is the shipped encoder's
    latent) and write it into the model folder every ``checkpoint_every`` steps."""
    options.check()
    seed_everything(options.seed)
    teacher = model.encoder.eval().requires_grad_(False)
    student = Encoder(model.config, causal=True)
    entry = model.manifest.get(LOW_LATENCY)
    start_from, before = teacher.state_dict(), {}
    if entry and not options.fresh:
        start_from = load_model(model.path, low_latency=True).encoder.state_dict()
        before = entry.get("provenance", {})
    student.load_state_dict(start_from)
    segments = _Segments(teacher, student, options.frames)
    train_sources, val_sources = _domain_sources(data, options.seed, segments.samples)
    plain = Augmentation(enabled=False)
    batches = DomainBatches(train_sources, options.batch_size, segments.samples, options.seed, plain)
    held_out = DomainBatches(
        val_sources or train_sources, options.batch_size, segments.samples, options.seed + 1, plain
    )
    val = [held_out[k][2] for k in range(options.val_batches)]
    with torch.no_grad():
        val_targets = [segments.loss_frames(teacher(x)) for x in val]
    bf16 = native_bf16() if options.bf16 is None else options.bf16
    optimiser = torch.optim.Adam(student.parameters(), lr=options.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / max(1, options.warmup))
    )

    def validate() -> float:
        student.eval()
        with torch.no_grad():
            pairs = zip(val, val_targets, strict=True)
            errors = [relative_error(segments.loss_frames(student(x)), t) for x, t in pairs]
        student.train()
        return float(torch.stack(errors).mean())

    start_error = validate()
    val_error, tic = start_error, time.perf_counter()
    provenance = {
        "teacher_sha256": model.manifest["encoder"]["sha256"],
        "data": recorded_path(data),
        "options": {k: v for k, v in asdict(options).items() if k != "fresh"},
        "start_val_error": before.get("start_val_error", round(start_error, 5)),
    }
    for step in range(1, options.steps + 1):
        audio = batches[step - 1][2]
        with torch.no_grad():
            target = segments.loss_frames(teacher(audio))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            predicted = segments.loss_frames(student(audio))
        loss = F.mse_loss(predicted.float(), target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        stats = {
            "latent_error": float(relative_error(predicted.detach().float(), target)),
            "samples_per_second": step * audio.numel() / (time.perf_counter() - tic),
        }
        if not np.isfinite(stats["latent_error"]):
            raise DivergedError(f"distillation diverged at step {step}; lower --lr")
        if step % options.checkpoint_every == 0 or step == options.steps:
            val_error = validate()
            done = {
                "steps": before.get("steps", 0) + step,
                "val_error": round(val_error, 5),
                "wall_seconds": before.get("wall_seconds", 0) + round(time.perf_counter() - tic),
            }
            set_low_latency_encoder(model, student, {**provenance, **done})
            stats["val_error"] = val_error
        if on_step is not None:
            on_step(step, options.steps, stats)
    return DistillResult(options.steps, val_error, start_error, time.perf_counter() - tic)
