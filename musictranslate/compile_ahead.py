"""Compile now what numba would otherwise compile during the first translation after installing.

The fused decoder step (``fused.py``), pyin (``pyin.py``), the retuning overlap-add
(``retune.py``) and librosa's pitch shift (``input_fit.py``) are numba code cached on disk after
their first use, which compiles them for this CPU: a first ``translate`` would pay about twice
the time of the next. ``make install`` runs ``python -m musictranslate.compile_ahead``, so it is
paid once, at install time, and again only when a kernel's source changes.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from . import fused
from .config import SAMPLE_RATE, preset
from .generate import FastDecoder
from .input_fit import fit_input
from .model import Decoder
from .retune import overlap_add
from .runtime import native_bf16


def compile_ahead() -> list[str]:
    """Compile the fused step in each dtype the plan may pick on this CPU (the compiled code
    depends on the arrays' types, not their sizes, so a tiny decoder's step serves every model)
    fit a whistle-high tone (pyin, then an octave's pitch shift) and pitch it up by a semitone
    (overlap-add); returns what was compiled."""
    done = []
    if fused.available():
        fast = FastDecoder(Decoder(preset("tiny")))
        for dtype in [torch.float32, torch.bfloat16] if native_bf16() else [torch.float32]:
            fast.fused(dtype)
            done.append(f"fused step ({str(dtype).removeprefix('torch.')})")
    tone = np.sin(2 * np.pi * 1200.0 * np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    fit_input(0.3 * tone, None)
    overlap_add(tone, np.full(len(tone), SAMPLE_RATE / 1200.0), np.full(len(tone), 2 ** (1 / 12)))
    return [*done, "the input fit", "retuning"]


if __name__ == "__main__":
    started = time.perf_counter()
    compiled = compile_ahead()
    print(f"compiled {', '.join(compiled)} in {time.perf_counter() - started:.1f} s")
