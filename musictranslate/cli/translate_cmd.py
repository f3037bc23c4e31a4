"""``musictranslate translate`` and ``blend``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import ModelOption, ModelsOption, QuietOption, app, progress_bar, user_errors

TemperatureOption = Annotated[
    float, typer.Option("--temperature", "-t", help="Sampling temperature; 0 picks the likeliest sample.")
]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same output.")]
BatchOption = Annotated[int, typer.Option("--batch-size", help="Segments generated in parallel.")]
ForceOption = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output file.")]
OutOption = Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file.")]


def _default_output(source: Path, suffix: str) -> Path:
    """``<stem>_<suffix>.<ext>`` next to the input; formats soundfile cannot write become .wav."""
    ext = source.suffix.lower() if source.suffix.lower() in (".wav", ".flac", ".ogg") else ".wav"
    return source.with_name(f"{source.stem}_{suffix}{ext}")


@app.command("translate")
def translate_command(
    source: Annotated[Path, typer.Argument(help="Audio file to translate.")],
    to: Annotated[str, typer.Option("--to", help="Target domain (see `musictranslate models`).")],
    output: OutOption = None,
    model: ModelOption = "default",
    models: ModelsOption = None,
    temperature: TemperatureOption = 1.0,
    seed: SeedOption = 0,
    batch_size: BatchOption = 64,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Translate an audio file into another instrument's domain."""
    from ..audio import load_audio, save_audio
    from ..generate import GenerationOptions
    from ..registry import load_model
    from ..translation import translate

    with user_errors():
        loaded = load_model(model, models)
        loaded.check_domain(to)
        target = output or _default_output(source, to)
        _check_output(target, force)
        audio = load_audio(source)
        options = GenerationOptions(temperature=temperature, seed=seed, batch_size=batch_size)
        with progress_bar(f"{source.name} -> {to}", quiet) as progress:
            result = translate(audio, to, loaded, options, progress)
        save_audio(target, result, force=force)
    if not quiet:
        typer.echo(f"wrote {target}", err=True)


@app.command("blend")
def blend_command(
    first: Annotated[Path, typer.Argument(help="Audio that starts the blend.")],
    second: Annotated[Path, typer.Argument(help="Audio the blend fades into.")],
    domain: Annotated[str, typer.Option("--domain", "-d", help="Domain whose decoder renders the blend.")],
    output: OutOption = None,
    keep: Annotated[float, typer.Option(help="Seconds of the first input's latent kept as is.")] = 3.5,
    crossfade: Annotated[float, typer.Option(help="Seconds over which the latents are crossfaded.")] = 1.5,
    model: ModelOption = "default",
    models: ModelsOption = None,
    temperature: TemperatureOption = 1.0,
    seed: SeedOption = 0,
    batch_size: BatchOption = 64,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Blend two pieces in the shared latent space and render the blend in one domain."""
    from ..audio import load_audio, save_audio
    from ..generate import GenerationOptions
    from ..registry import load_model
    from ..translation import blend

    if keep < 0 or crossfade < 0:
        raise typer.BadParameter("--keep and --crossfade must be >= 0")
    with user_errors():
        loaded = load_model(model, models)
        loaded.check_domain(domain)
        target = output or _default_output(first, f"{second.stem}_{domain}")
        _check_output(target, force)
        a, b = load_audio(first), load_audio(second)
        options = GenerationOptions(temperature=temperature, seed=seed, batch_size=batch_size)
        with progress_bar(f"blend -> {domain}", quiet) as progress:
            result = blend(a, b, domain, loaded, keep, crossfade, options, progress)
        save_audio(target, result, force=force)
    if not quiet:
        typer.echo(f"wrote {target}", err=True)


def _check_output(target: Path, force: bool) -> None:
    """Fail before any work when the output cannot be written, not after minutes of generation."""
    from ..errors import OutputError

    if target.exists() and not force:
        raise OutputError(f"{target}: already exists; pass --force to overwrite")
    if not target.parent.is_dir():
        raise OutputError(f"{target.parent}: output folder does not exist; create it first")
