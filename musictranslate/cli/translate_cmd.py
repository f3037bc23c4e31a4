"""``musictranslate translate`` and ``blend``: parse, hand the work to ``jobs``, report.

Exit status: 0 when every output was written, 1 when any failed (after all the others were
tried), 2 for usage errors. The job logic -- expanding folders, naming outputs, encoding once per
input, timing, loudness -- lives in ``musictranslate.jobs`` so a script can do the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..config import DEFAULT_MIN_P, DEFAULT_RETUNE, DEFAULT_TEMPERATURE, MAX_PITCH_CANDIDATES
from .common import (
    Device,
    DeviceOption,
    JsonOption,
    ModelOption,
    ModelsOption,
    QuietOption,
    ThreadsOption,
    app,
    debugging,
    print_json,
    progress_bar,
    report_error,
    stderr,
    table_console,
    tell,
    user_errors,
)
from .numbers import finite, seed_range

if TYPE_CHECKING:
    from ..jobs import Result, Task

TemperatureOption = Annotated[
    float,
    typer.Option(
        "--temperature",
        "-t",
        callback=finite(0.0),
        help="Sampling temperature: 1 samples the decoder as trained (the paper's), lower sounds more "
        "like the target instrument, 0 picks the likeliest sample.",
    ),
]
MinPOption = Annotated[
    float,
    typer.Option(
        "--min-p",
        callback=finite(0.0, maximum=1.0),
        help="Min-p sampling: never draw a sample value less likely than this share of the likeliest "
        "one (0 keeps the whole distribution); cuts the rare far-off draws heard as hiss.",
    ),
]
FollowPitchOption = Annotated[
    int,
    typer.Option(
        "--follow-pitch",
        min=1,
        max=MAX_PITCH_CANDIDATES,
        metavar="N",
        help="Pitch-guided sampling: draw N continuations side by side every 12.5 ms and keep the one "
        "at the input's pitch (about N times the work; 1 is plain sampling). Keeps a monophonic "
        "melody on its notes.",
    ),
]
RetuneOption = Annotated[
    bool,
    typer.Option(
        "--retune/--no-retune",
        help="After decoding, put the translation on the input's notes wherever the input has "
        "one (pitch-synchronous overlap-add; octave, timbre and timing kept). Puts a drifting "
        "melody back on its notes for the cost of a second pitch track.",
    ),
]
SeedOption = Annotated[
    int,
    typer.Option(
        "--seed",
        callback=seed_range,
        help="Seeds Python, numpy and torch: the same seed gives the same output (on one machine).",
    ),
]
BatchOption = Annotated[
    Optional[int],
    typer.Option(
        "--batch-size", min=1, help="Segments generated side by side (default: from length and CPU)."
    ),
]
DtypeOption = Annotated[
    Optional[str],
    typer.Option(
        "--dtype", help="float32 or bfloat16 for generation (default: bfloat16 where the CPU gains)."
    ),
]
WorkersOption = Annotated[
    Optional[int], typer.Option("--workers", min=1, help="Generation workers (default: one per core).")
]
ForceOption = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing output files.")]
TransposeOption = Annotated[
    str,
    typer.Option(
        "--transpose",
        help="Semitones to shift each input before encoding, or auto: whole octaves down when its "
        "melody sits above the register the model was trained on (whistling). 0 keeps it.",
    ),
]
OutOption = Annotated[
    Optional[Path],
    typer.Option(
        "--output",
        "-o",
        help="Output folder (mirrors the input tree), or a file for one input and one domain.",
    ),
]
FormatOption = Annotated[
    Optional[str],
    typer.Option(
        "--format", help="Output format by extension: wav, flac, ogg, mp3... (default: the input's)."
    ),
]
SampleRateOption = Annotated[
    Optional[int],
    typer.Option(
        "--sample-rate",
        min=8000,
        max=384000,
        help="Sample rate of the files written, Hz (default: each input's own; blend: the first's). "
        "The model works at 16 kHz, so the content's bandwidth stays 8 kHz whatever the rate.",
    ),
]
LoudnessOption = Annotated[
    bool,
    typer.Option(
        "--match-loudness/--no-match-loudness",
        help="Match each output's loudness to its input (peak <= -1 dBFS).",
    ),
]


RUN_OPTIONS = (
    "model",
    "models",
    "device",
    "threads",
    "seed",
    "temperature",
    "min_p",
    "batch_size",
    "dtype",
    "workers",
    "force",
    "match_loudness",
    "transpose",
    "sample_rate",
    "json_output",
    "quiet",
)
"""The options ``translate`` and ``blend`` both take and hand on unchanged to ``_run_and_report``."""


def _run_options(arguments: dict[str, object]) -> dict[str, object]:
    """The shared options out of a command's ``locals()``: typer needs each command to declare
    every option in its own signature, but forwarding them one by one twice invited the two
    commands to drift apart."""
    return {name: arguments[name] for name in RUN_OPTIONS}


def _run_and_report(
    plan: list[Task],
    domains: list[str],
    *,
    model: str,
    models: Path | None,
    device: Device,
    threads: int | None,
    seed: int,
    temperature: float,
    min_p: float,
    batch_size: int | None,
    dtype: str | None,
    workers: int | None,
    force: bool,
    match_loudness: bool,
    transpose: str,
    sample_rate: int | None,
    json_output: bool,
    quiet: bool,
    follow_pitch: int = 1,
    retune: bool = DEFAULT_RETUNE,
) -> None:
    """What ``translate`` and ``blend`` share once their inputs are planned: set up the runtime,
    load the model, check every domain before any work, run, report, and exit 0 or 1."""
    from ..jobs import RunOptions, check_domains, parse_transpose, run
    from ..registry import load_model
    from ..runtime import configure_runtime
    from ..speed import GenerationOptions, resolve_dtype

    if dtype is not None:
        try:
            resolve_dtype(dtype)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--dtype") from None

    with user_errors():
        shift = parse_transpose(transpose)
        resolved = configure_runtime(device.value, threads, seed)
        tell(f"loading model {model}", quiet)
        loaded = load_model(model, models)
        check_domains(loaded, domains)
        generation = GenerationOptions(
            temperature=temperature,
            min_p=min_p,
            follow_pitch=follow_pitch,
            retune=retune,
            seed=seed,
            batch_size=batch_size,
            dtype=dtype,
            workers=workers,
            device=resolved,
        )
        options = RunOptions(
            generation, force=force, match_loudness=match_loudness, transpose=shift, sample_rate=sample_rate
        )
        results = run(
            loaded,
            plan,
            options,
            progress=lambda label: progress_bar(label, quiet),
            on_result=_error_reporter(notes=not quiet),
            on_status=lambda message: tell(message, quiet),
        )
    if json_output:
        print_json([result.to_dict() for result in results])
    elif not quiet:
        _print_summary(results, f"seed {seed}, model {loaded.name}, {resolved}")
    if not any(result.ok for result in results) or any(r.status == "failed" for r in results):
        raise typer.Exit(1)


def _error_reporter(notes: bool) -> Callable[[Result], None]:
    """Print each failure on stderr as it happens; an input that fails for every domain (a corrupt
    file) is reported once, not once per domain. So is an input shifted into the model's register,
    since its translation then plays in another octave than the user sang or whistled, an input
    skipped because the tool wrote it, and a warning about an input (unless ``notes`` is off:
    ``--quiet``)."""
    seen: set[str] = set()
    noted: set[str] = set()
    told: set[tuple[str, str]] = set()

    def report(result: Result) -> None:
        if notes and result.note and (result.input, result.note) not in told:
            told.add((result.input, result.note))
            kind = "note" if result.skipped else "warning"
            stderr.print(f"{kind}: {result.input}: {result.note}", markup=False, highlight=False)
        if notes and any(result.transpose) and result.input not in noted:
            noted.add(result.input)
            shifts = " and ".join(f"{s:+d}" for s in result.transpose)
            stderr.print(
                f"note: {result.input}: shifted {shifts} semitones into the register the model was "
                "trained on; --transpose 0 keeps its own",
                highlight=False,
            )
        if result.status == "failed" and result.error not in seen:
            seen.add(result.error or "")
            if debugging() and result.traceback:
                stderr.print(result.traceback, markup=False, highlight=False, end="")
            report_error(result.error or f"{result.input}: failed")

    return report


def _print_summary(results: list[Result], setup: str) -> None:
    """The end-of-run table on stdout: one row per output."""
    from rich.table import Table
    from rich.text import Text

    def number(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    failed = sum(r.status == "failed" for r in results)
    skipped = sum(r.skipped for r in results)
    counts = f"{len(results) - failed - skipped} written, {failed} failed" + (
        f", {skipped} skipped" if skipped else ""
    )
    table = Table(caption=f"{counts} ({setup})")
    table.add_column("input", overflow="fold")
    table.add_column("domain")
    table.add_column("output", overflow="fold")
    table.add_column("Hz", justify="right")
    table.add_column("audio s", justify="right")
    table.add_column("wall s", justify="right")
    table.add_column("RTF", justify="right")
    table.add_column("status")
    styles = {"ok": "green", "failed": "bold red", "skipped": "yellow"}
    for r in results:
        table.add_row(
            Text(r.input),
            r.domain or "-",
            Text(r.output or "-"),
            str(r.sample_rate or "-"),
            number(r.seconds, 2),
            number(r.wall_seconds, 2),
            number(r.rtf, 2),
            Text(r.status, style=styles[r.status]),
        )
    table_console().print(table)


@app.command("translate")
def translate_command(
    inputs: Annotated[
        list[Path],
        # readable=False: an unreadable file fails alone, as a corrupt one does, not the whole call
        typer.Argument(readable=False, help="Audio files and folders (searched recursively for audio)."),
    ],
    to: Annotated[
        list[str],
        typer.Option(
            "--to", metavar="DOMAIN", help="Target domain(s): --to piano,flute or --to piano --to flute."
        ),
    ],
    output: OutOption = None,
    fmt: FormatOption = None,
    model: ModelOption = "default",
    models: ModelsOption = None,
    device: DeviceOption = Device.auto,
    threads: ThreadsOption = None,
    seed: SeedOption = 0,
    temperature: TemperatureOption = DEFAULT_TEMPERATURE,
    min_p: MinPOption = DEFAULT_MIN_P,
    follow_pitch: FollowPitchOption = 1,
    retune: RetuneOption = DEFAULT_RETUNE,
    batch_size: BatchOption = None,
    dtype: DtypeOption = None,
    workers: WorkersOption = None,
    match_loudness: LoudnessOption = True,
    transpose: TransposeOption = "auto",
    sample_rate: SampleRateOption = None,
    force: ForceOption = False,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Translate audio files and folders into one or more instruments' domains.

    Each input is encoded once, then decoded by every requested domain's decoder.

    Outputs: <stem>_<domain>.<ext> next to the input, or under -o DIR mirroring the input tree,
    at the input's sample rate. Files this tool wrote (a tag in their metadata says so) are
    skipped when found in a folder, so a second run does not translate the first one's outputs;
    name such a file to translate it again.
    """
    from ..jobs import normalise_format, parse_domains, plan_translate

    with user_errors():
        domains = parse_domains(to)
        plan = plan_translate(inputs, domains, output, normalise_format(fmt))
    _run_and_report(plan, domains, **_run_options(locals()), follow_pitch=follow_pitch, retune=retune)


@app.command("blend")
def blend_command(
    first: Annotated[Path, typer.Argument(help="Audio that starts the blend.")],
    second: Annotated[Path, typer.Argument(help="Audio the blend fades into.")],
    to: Annotated[
        list[str],
        typer.Option(
            "--to", metavar="DOMAIN", help="Domain(s) whose decoder renders the blend: --to piano,flute."
        ),
    ],
    output: OutOption = None,
    fmt: FormatOption = None,
    keep: Annotated[
        float,
        typer.Option(
            callback=finite(0.0), help="Seconds of the first input's latent kept as is (warns past its end)."
        ),
    ] = 3.5,
    crossfade: Annotated[
        float, typer.Option(callback=finite(0.0), help="Seconds over which the latents are crossfaded.")
    ] = 1.5,
    model: ModelOption = "default",
    models: ModelsOption = None,
    device: DeviceOption = Device.auto,
    threads: ThreadsOption = None,
    seed: SeedOption = 0,
    temperature: TemperatureOption = DEFAULT_TEMPERATURE,
    min_p: MinPOption = DEFAULT_MIN_P,
    batch_size: BatchOption = None,
    dtype: DtypeOption = None,
    workers: WorkersOption = None,
    match_loudness: LoudnessOption = True,
    transpose: TransposeOption = "auto",
    sample_rate: SampleRateOption = None,
    force: ForceOption = False,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Blend two pieces in the shared latent space and render the blend in a domain.

    Outputs: <first>_<second>_<domain>.<ext> next to the first input, or in -o DIR.
    """
    from ..jobs import normalise_format, parse_domains, plan_blend

    with user_errors():
        domains = parse_domains(to)
        plan = plan_blend(first, second, domains, output, normalise_format(fmt), keep, crossfade)
    _run_and_report(plan, domains, **_run_options(locals()))
