"""Benchmarks that print figures (``make bench`` or ``python -m bench``); none of them is a test.

One module per benchmark, each with a ``run(quick) -> dict`` that prints its own table and returns
what goes into the JSON report. Timings on a shared machine are noisy: every module interleaves
the configurations it compares and keeps the best of a few repeats, and the report records the
load average before and after so a reader can tell a quiet run from a busy one.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from musictranslate.config import SAMPLE_RATE, ModelConfig, preset
from musictranslate.model import Decoder


def machine() -> dict:
    """What the figures were measured on."""
    from musictranslate.runtime import native_bf16
    from musictranslate.speed import available_workers

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if "model name" in line), model)
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": available_workers(),
        "native_bf16": native_bf16(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def best_of(repeats: int, measures: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Run every measure ``repeats`` times, interleaved, and keep each one's best (highest) value,
    so a burst of load from another process hurts all candidates alike."""
    best: dict[str, float] = {}
    for _ in range(repeats):
        for name, measure in measures.items():
            best[name] = max(best.get(name, 0.0), measure())
    return best


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a plain aligned table (also valid Markdown)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        print("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")


def rate(samples_per_second: float) -> str:
    return f"{samples_per_second:,.0f}"


def realtime(samples_per_second: float) -> str:
    """Real-time factor: how many seconds of audio per second of wall time."""
    return f"{samples_per_second / SAMPLE_RATE:.2f}x"


@dataclass
class BenchModel:
    """A decoder to time, with where it came from."""

    name: str
    config: ModelConfig
    decoder: Decoder
    note: str


def default_model_folder() -> Path | None:
    """``models/default`` of the registry when it exists (it is trained separately)."""
    from musictranslate.catalog import find_model
    from musictranslate.errors import MusicTranslateError

    try:
        return find_model("default")
    except MusicTranslateError:
        return None


def model_label(folder: Path) -> str:
    """How the figures name a registry model: by its name, since the folder's absolute path
    would put this machine's layout into every table and bench.json that gets pasted in docs."""
    return f"shipped model {folder.name!r}"


def bench_models(quick: bool) -> list[BenchModel]:
    """The paper and small presets (random weights: speed does not depend on them) and the
    shipped default model, or a random ``small`` one in its place when it is not there yet."""
    torch.manual_seed(0)
    models = [
        BenchModel(name, preset(name), Decoder(preset(name)).eval(), "random weights")
        for name in (("small",) if quick else ("paper", "small"))
    ]
    folder = default_model_folder()
    if folder is not None:
        from musictranslate.registry import load_model

        loaded = load_model(str(folder))
        domain = loaded.domains[0]
        note = f"{model_label(folder)}, decoder {domain!r}"
        models.append(BenchModel("default", loaded.config, loaded.decoder(domain), note))
    else:
        cfg = preset("small")
        models.append(
            BenchModel("default", cfg, Decoder(cfg).eval(), "NOT FOUND: a random small model stands in")
        )
    return models


class Stopwatch:
    """Wall time since creation."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
