"""End-to-end ``translate`` of an 8 s, 60 s and 240 s file: wall time and peak memory.

Each length runs in a fresh process (``python -m bench.translate --child ...``) that imports the
package, loads the model, reads the file, translates it with the default (automatic) options
(fitted, encoded with its pitch track, generated, retuned) and writes the result - what a user's
script or the CLI does - and reports its peak RSS. The parent times the process. Cost should
grow linearly with the length and memory stay flat.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from musictranslate.config import SAMPLE_RATE

from . import default_model_folder, model_label, table

LENGTHS = (8, 60, 240)


def melody(seconds: float, seed: int = 0) -> np.ndarray:
    """A whistle-like tune: a sine per quarter second, with vibrato, at a comfortable level."""
    rng = np.random.default_rng(seed)
    notes = 440.0 * 2 ** (rng.integers(-5, 8, int(np.ceil(seconds * 4))) / 12)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    freq = np.repeat(notes, SAMPLE_RATE // 4)[: len(t)] * (1 + 0.004 * np.sin(2 * np.pi * 5.5 * t))
    return (0.3 * np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE)).astype(np.float32)


def _model_folder(workdir: Path) -> tuple[Path, str]:
    """The shipped default model, or a random small one saved in ``workdir``."""
    folder = default_model_folder()
    if folder is not None:
        return folder, model_label(folder)
    import torch

    from musictranslate.config import preset
    from musictranslate.model import ConfusionNet, Decoder, Encoder
    from musictranslate.registry import save_model

    torch.manual_seed(0)
    cfg = preset("small")
    folder = save_model(
        workdir / "small", cfg, Encoder(cfg), ConfusionNet(cfg, 1), {"piano": Decoder(cfg)}, {}
    )
    return folder, "NOT FOUND: a random small model stands in for models/default"


def _child(source: str, model: str, output: str) -> None:
    """What runs in the measured process; prints one JSON line. ``translate`` is fitting and
    encoding the input (with its pitch track), generating, then retuning; they are called one
    after the other here to time each."""
    start = time.perf_counter()
    from musictranslate import decode, load_audio, load_model, save_audio
    from musictranslate.retune import retune
    from musictranslate.runtime import resolve_device
    from musictranslate.speed import GenerationOptions, plan_generation
    from musictranslate.translation import encode_fitted

    loaded = load_model(model)
    domain = loaded.domains[0]
    loaded.decoder(domain)
    audio = load_audio(source)
    # The device resolved here, not "auto": the plan printed below must be the one `decode` ran.
    options = GenerationOptions(device=resolve_device("auto"))
    ready = time.perf_counter()
    latent, _, guide = encode_fitted(audio, model=loaded, guide=options.pitch_guided)
    encoded = time.perf_counter()
    result = decode(latent, domain, model=loaded, length=len(audio), options=replace(options, retune=False))
    generated = time.perf_counter()
    if options.retune:
        result = retune(result, guide)
    done = time.perf_counter()
    save_audio(output, result, force=True)
    plan = plan_generation(loaded.config, latent.shape[1], options)
    print(
        json.dumps(
            {
                "setup_s": ready - start,
                "encode_s": encoded - ready,
                "generate_s": generated - encoded,
                "retune_s": done - generated,
                "translate_s": done - ready,
                "peak_rss_mb": _peak_rss_mb(),
                "plan": plan.describe(),
                "seconds": len(audio) / SAMPLE_RATE,
            }
        )
    )


def _peak_rss_mb() -> float:
    """This process's peak resident memory. Not ``ru_maxrss``: Linux carries the parent's peak
    over into a child through fork and exec, so a child of a big parent would report the parent."""
    try:
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) / 1024 for line in handle if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(source: Path, model: Path, output: Path) -> dict:
    command = [sys.executable, "-m", "bench.translate", "--child", str(source), str(model), str(output)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"translate child failed ({done.returncode}):\n{done.stderr}")
    return {"wall_s": wall, **json.loads(done.stdout.strip().splitlines()[-1])}


def run(quick: bool) -> dict:
    import soundfile as sf

    lengths = (2, 6) if quick else LENGTHS
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model, note = _model_folder(workdir)
        for seconds in lengths:
            source = workdir / f"tune_{seconds}s.wav"
            sf.write(source, melody(seconds), SAMPLE_RATE)
            results[str(seconds)] = _measure(source, model, workdir / f"out_{seconds}s.wav")
    rows = [
        (
            f"{r['seconds']:.0f} s",
            f"{r['wall_s']:.1f}",
            f"{r['seconds'] / r['wall_s']:.2f}x",
            f"{r['encode_s']:.1f} ({r['seconds'] / r['encode_s']:.1f}x)",
            f"{r['generate_s']:.1f} ({r['seconds'] / r['generate_s']:.1f}x)",
            f"{r['retune_s']:.1f}",
            f"{r['peak_rss_mb']:.0f}",
            r["plan"],
        )
        for r in results.values()
    ]
    header = (
        "input",
        "wall s",
        "x real time",
        "fit+encode s",
        "generate s",
        "retune s",
        "peak RSS MB",
        "plan",
    )
    table(f"end-to-end translate ({note}; wall includes start-up and model load)", header, rows)
    return {"model": note, "runs": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("SOURCE", "MODEL", "OUTPUT"), required=True)
    _child(*parser.parse_args().child)
