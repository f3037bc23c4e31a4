"""``musictranslate live``: translate the default input device (or a file, or a WAV pipe) into
the default output device (or a file, or a WAV pipe) as it plays.

Exit status: 0 when the input was translated to its end, 1 when a device, file or pipe failed,
2 for usage errors, 130 when interrupted (an output file is then not written at all).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..config import DEFAULT_MIN_P, DEFAULT_TEMPERATURE
from .common import ModelOption, ModelsOption, QuietOption, app, stderr, user_errors
from .numbers import finite
from .translate_cmd import MinPOption, SeedOption, TemperatureOption


@app.command()
def live(
    to: Annotated[str, typer.Option("--to", help="Target domain (instrument) to translate into.")],
    input: Annotated[
        Optional[str],
        typer.Option(
            "--input", "-i", help="Audio file, or - for a WAV stream on stdin (default: the input device)."
        ),
    ] = None,
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output", "-o", help="Audio file, or - for a WAV stream on stdout (default: the output device)."
        ),
    ] = None,
    model: ModelOption = "default",
    models: ModelsOption = None,
    seed: SeedOption = 0,
    temperature: TemperatureOption = DEFAULT_TEMPERATURE,
    min_p: MinPOption = DEFAULT_MIN_P,
    gain: Annotated[
        float,
        typer.Option("--gain", callback=finite(), help="Input gain in dB (the stream has no level fit)."),
    ] = 0.0,
    buffer: Annotated[
        Optional[float],
        typer.Option(
            "--buffer",
            callback=finite(0.0),
            help="Output buffer in ms beyond the algorithmic latency [80; 40 with --low-latency].",
        ),
    ] = None,
    low_latency: Annotated[
        bool,
        typer.Option(
            "--low-latency",
            help="Use the model's causal encoder (musictranslate distill): no look-ahead, at some "
            "cost in quality (the model card says how much).",
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output file.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Translate live: prints the latency, then a summary with measured latency and underruns."""
    with user_errors():
        import torch

        from ..live import default_buffer_ms, describe_latency, open_sink, open_source, run_live
        from ..registry import load_model
        from ..stream import TranslationStream

        torch.set_num_threads(1)  # the stream steps one frame at a time: threads only add waiting
        loaded = load_model(model, models, low_latency=low_latency)
        stream = TranslationStream(
            to, model=loaded, temperature=temperature, min_p=min_p, seed=seed, gain_db=gain
        )
        buffer = default_buffer_ms(stream) if buffer is None else buffer
        comment = (
            f"musictranslate live: model {loaded.name}{' (low-latency encoder)' if low_latency else ''}, "
            f"domain {to}, seed {seed}, "
            f"temperature {temperature}, min-p {min_p}"
        )
        sink = open_sink(output, stream, buffer, force, comment)
        try:
            source = open_source(input)
        except BaseException:
            sink.close()
            raise

        def started() -> None:
            if not quiet:
                stderr.print(describe_latency(stream, buffer), highlight=False)

        report = run_live(stream, source, sink, buffer, started)
        if not quiet:
            stderr.print(report.summary(), highlight=False)
