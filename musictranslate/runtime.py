"""Where and how torch runs: device, threads, seeds, and whether the CPU has native bf16.

Training, translation and evaluation all take ``--device``, ``--threads`` and ``--seed``; they
share this module so that each means the same everywhere, and so that training does not import
the translation engine just to pick a device.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from .errors import MusicTranslateError, UsageError

DEVICES = ("auto", "cpu", "cuda")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""CPU flags of native bf16 dot products (Intel Cooper Lake / Sapphire Rapids, AMD Zen 4 on)."""


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` only when torch sees a CUDA device, else ``cpu``; never assumes cuda."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise MusicTranslateError("--device cuda: torch sees no CUDA device here; use --device cpu or auto")
    if name not in DEVICES:
        raise UsageError(f"--device {name}: choose auto, cpu or cuda")
    return name


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch, so any randomness outside the sampler is reproducible too.

    The sampler itself is seeded again for every output (``GenerationOptions.seed``), so a file's
    translation does not depend on which other files were translated before it in the same run.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(threads: int | None) -> None:
    """``--threads N``: torch's intra-op threads; ``None`` leaves torch's default (all cores)."""
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"--threads {threads}: give at least 1")
    torch.set_num_threads(threads)


def configure_runtime(device: str, threads: int | None, seed: int) -> str:
    """Apply ``--threads`` and ``--seed`` and return the resolved device."""
    resolved = resolve_device(device)
    set_threads(threads)
    seed_everything(seed)
    return resolved


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16() -> bool:
    """True where bf16 matmuls run on bf16 dot-product instructions (faster than fp32)."""
    return any(flag in cpu_flags() for flag in BF16_FLAGS)
