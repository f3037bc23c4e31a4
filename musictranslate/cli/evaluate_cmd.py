"""``musictranslate evaluate ...``: parse, call ``musictranslate.evaluate``, print tables or JSON.

Batch commands score every pair they can, report each failure on stderr as one line, and exit 1
when any pair failed or none was scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..config import (
    CLASSIFIER_MAX_SECONDS,
    CLASSIFIER_STEPS,
    DEFAULT_MIN_P,
    DEFAULT_RETUNE,
    DEFAULT_TEMPERATURE,
)
from .common import (
    Device,
    DeviceOption,
    Group,
    JsonOption,
    ModelOption,
    ModelsOption,
    QuietOption,
    ThreadsOption,
    app,
    print_json,
    progress_bar,
    report_error,
    table_console,
    tell,
    user_errors,
)
from .numbers import finite
from .translate_cmd import (
    BatchOption,
    FollowPitchOption,
    ForceOption,
    MinPOption,
    RetuneOption,
    SeedOption,
    TemperatureOption,
    TransposeOption,
)

if TYPE_CHECKING:
    from ..speed import GenerationOptions

evaluate_app = typer.Typer(
    name="evaluate",
    help="Score translations: pitch, parallel references, domain check, lineup, embeddings, report.",
    no_args_is_help=True,
    cls=Group,
)
app.add_typer(evaluate_app, name="evaluate")

OutDirOption = Annotated[Path, typer.Option("--output", "-o", help="Output folder (created if missing).")]


def _scores_table(rows: list[dict], columns: Sequence[str], title: str) -> None:
    """Print ``rows`` (dicts with ``file`` and the ``columns``) and their mean as a rich table."""
    from rich.table import Table
    from rich.text import Text

    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    table = Table(title=title)
    table.add_column("file", overflow="fold")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(Text(row["file"]), *(cell(row.get(c)) for c in columns))
    if len(rows) > 1:
        means = []
        for column in columns:
            values = [r[column] for r in rows if isinstance(r.get(column), (int, float))]
            means.append(cell(sum(values) / len(values)) if values else "-")
        table.add_row(Text("mean", style="bold"), *means)
    table_console().print(table)


def _score_pairs(
    pairs: list[tuple[Path, Path]], score: Callable[[Path, Path], dict], label: str, quiet: bool
) -> tuple[list[dict], int]:
    """Score every pair, reporting failures as they happen; returns the rows and the failure count."""
    from ..errors import MusicTranslateError

    rows, failed = [], 0
    with progress_bar(label, quiet) as progress:
        for done, (first, second) in enumerate(pairs):
            try:
                rows.append({"file": str(second), "against": str(first), **score(first, second)})
            except MusicTranslateError as exc:
                report_error(f"{second}: {exc}")
                failed += 1
            if progress is not None:
                progress(done + 1, len(pairs))
    return rows, failed


def _finish(
    rows: list[dict], failed: int, columns: Sequence[str], title: str, json_output: bool, quiet: bool
) -> None:
    """Print the rows (table or JSON) and exit 1 when any pair failed or none was scored."""
    if json_output:
        print_json(rows)
    elif not quiet and rows:
        _scores_table(rows, columns, title)
    if failed or not rows:
        raise typer.Exit(1)


@evaluate_app.command("pitch")
def pitch_command(
    source: Annotated[Path, typer.Argument(help="Input audio file, or a folder of them.")],
    output: Annotated[
        Path, typer.Argument(help="Its translation (<stem>_<domain>.<ext>), or a folder mirroring SOURCE.")
    ],
    max_lag: Annotated[
        float, typer.Option("--max-lag", callback=finite(0.0), help="Largest shift NCC searches, s.")
    ] = 0.5,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Pitch of outputs against their inputs: the paper's NCC and DTW, plus absolute measures.

    pyin contours; NCC at the optimal shift and DTW + correlation (the paper's, blind to
    transposition), with raw pitch accuracy and the DTW error in cents beside them.
    """
    from ..audio import load_audio
    from ..evaluate.files import pair_files
    from ..evaluate.pitch import score_pitch

    def score(src: Path, out: Path) -> dict:
        return score_pitch(load_audio(src), load_audio(out), max_lag).to_dict()

    with user_errors():
        pairs = pair_files(source, output)
    rows, failed = _score_pairs(pairs, score, "pitch", quiet)
    columns = (
        "ncc",
        "lag_seconds",
        "dtw_ncc",
        "raw_pitch_accuracy",
        "raw_chroma_accuracy",
        "dtw_cents_error",
    )
    _finish(rows, failed, columns, "pitch: output against its input", json_output, quiet)


@evaluate_app.command("reference")
def reference_command(
    output: Annotated[Path, typer.Argument(help="Translation file, or a folder of translations.")],
    reference: Annotated[
        Path, typer.Argument(help="The same notes rendered on the target instrument (file or folder).")
    ],
    onsets: Annotated[
        bool,
        typer.Option(
            "--onsets/--no-onsets", help="Onset F-measure; meaningful only for piano and harpsichord."
        ),
    ] = True,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Compare translations with a parallel reference rendering of the same notes.

    Multi-resolution STFT and log-mel distance (timbre), chroma similarity (notes), onset
    F-measure (attacks).
    """
    from ..audio import load_audio
    from ..evaluate.files import pair_files
    from ..evaluate.reference import score_reference

    def score(ref: Path, out: Path) -> dict:
        return score_reference(load_audio(out), load_audio(ref), with_onsets=onsets).to_dict()

    with user_errors():
        pairs = pair_files(reference, output)
    rows, failed = _score_pairs(pairs, score, "reference", quiet)
    columns = ("stft_distance", "log_mel_distance", "chroma_similarity", "onset_f")
    _finish(rows, failed, columns, "output against its parallel reference", json_output, quiet)


@evaluate_app.command("classifier")
def classifier_command(
    data: Annotated[
        list[Path],
        typer.Option("--data", help="Training folder with one subfolder per domain (repeat per soundfont)."),
    ],
    model: ModelOption = "default",
    models: ModelsOption = None,
    val: Annotated[
        Optional[list[Path]], typer.Option("--val", help="Held-out folder(s), same layout, for accuracy.")
    ] = None,
    domains: Annotated[
        Optional[str], typer.Option("--domains", help="Comma-separated domains (default: every subfolder).")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Training steps.")] = CLASSIFIER_STEPS,
    windows: Annotated[
        int, typer.Option("--batch-size", min=2, help="~1 s log-mel windows per step, balanced over domains.")
    ] = 32,
    max_seconds: Annotated[
        float,
        typer.Option("--max-seconds", callback=finite(1.0), help="Audio read per domain and folder, s."),
    ] = CLASSIFIER_MAX_SECONDS,
    seed: SeedOption = 0,
    threads: ThreadsOption = None,
    force: ForceOption = False,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train the independent domain classifier (log-mel CNN) and store it in the model folder."""
    from ..errors import OutputError
    from ..evaluate.classifier import META, train_classifier
    from ..registry import load_model
    from ..runtime import configure_runtime

    with user_errors():
        configure_runtime("cpu", threads, seed)
        loaded = load_model(model, models)
        if (loaded.path / META).exists() and not force:
            raise OutputError(f"{loaded.path / META}: a classifier exists; pass --force to replace it")
        wanted = [d.strip() for d in domains.split(",") if d.strip()] if domains else None
        with progress_bar("classifier", quiet) as progress:
            classifier = train_classifier(
                data,
                wanted,
                val or (),
                steps=steps,
                batch_size=windows,
                max_seconds=max_seconds,
                seed=seed,
                progress=progress,
            )
        path = classifier.save(loaded.path)
    training = classifier.meta["training"]
    if json_output:
        print_json({"path": str(path), "domains": classifier.domains, **training})
    elif not quiet:
        typer.echo(
            f"wrote {path}: domains {', '.join(classifier.domains)}; train accuracy "
            f"{training['train_accuracy']:.3f}"
            + (f", held-out accuracy {training['val_accuracy']:.3f}" if "val_accuracy" in training else "")
        )


@evaluate_app.command("domain")
def domain_command(
    inputs: Annotated[
        list[Path], typer.Argument(readable=False, help="Translations: audio files and folders.")
    ],
    to: Annotated[str, typer.Option("--to", metavar="DOMAIN", help="The domain they were translated into.")],
    model: ModelOption = "default",
    models: ModelsOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """How often the model's domain classifier recognises translations as their target domain."""
    from ..audio import load_audio
    from ..catalog import find_model
    from ..evaluate.classifier import load_classifier
    from ..evaluate.files import audio_files

    with user_errors():
        classifier = load_classifier(find_model(model, models))
        classifier.check_domain(to)
    files, empty = [], 0
    for path in inputs:
        found = audio_files(path) if path.is_dir() else [path]
        if not found:
            report_error(f"{path}: no audio files in this folder or below")
            empty += 1
        files += found

    def score(_: Path, path: Path) -> dict:
        probabilities = classifier.probabilities(load_audio(path))
        predicted = classifier.domains[int(probabilities.argmax())]
        p_target = float(probabilities[classifier.domains.index(to)])
        return {"predicted": predicted, "recognised": float(predicted == to), "p_target": p_target}

    rows, failed = _score_pairs([(f, f) for f in files], score, "domain", quiet)
    failed += empty
    title = f"recognised as {to}"
    if rows and not json_output and not quiet:
        title += f": {sum(r['recognised'] for r in rows) / len(rows):.1%} of {len(rows)}"
    _finish(rows, failed, ("predicted", "recognised", "p_target"), title, json_output, quiet)


def _generation(
    device: Device,
    threads: int | None,
    seed: int,
    temperature: float,
    min_p: float,
    batch_size: int,
    follow_pitch: int = 1,
    retune: bool = DEFAULT_RETUNE,
) -> GenerationOptions:
    """Apply --device/--threads/--seed like ``translate`` does and build the generation options."""
    from ..runtime import configure_runtime
    from ..speed import GenerationOptions

    resolved = configure_runtime(device.value, threads, seed)
    return GenerationOptions(
        temperature=temperature,
        min_p=min_p,
        follow_pitch=follow_pitch,
        retune=retune,
        seed=seed,
        batch_size=batch_size,
        device=resolved,
    )


@evaluate_app.command("lineup")
def lineup_command(
    source: Annotated[Path, typer.Argument(help="A source clip from one of the model's domains.")],
    source_domain: Annotated[
        str, typer.Option("--from", metavar="DOMAIN", help="The domain the source comes from.")
    ],
    output: OutDirOption,
    start: Annotated[
        float, typer.Option("--start", callback=finite(0.0), help="Where the segment starts, s.")
    ] = 0.0,
    seconds: Annotated[
        float, typer.Option("--seconds", callback=finite(0.1), help="Segment length, s.")
    ] = 10.0,
    model: ModelOption = "default",
    models: ModelsOption = None,
    device: DeviceOption = Device.auto,
    threads: ThreadsOption = None,
    seed: SeedOption = 0,
    temperature: TemperatureOption = DEFAULT_TEMPERATURE,
    min_p: MinPOption = DEFAULT_MIN_P,
    batch_size: BatchOption = 64,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """The paper's lineup test: an autoencoded source among its translations, shuffled.

    One clip per decoder: the source's own domain (autoencoding) and every other domain, written
    as clip_1.wav ... in a shuffled order, with the answer key in answers.json.
    """
    from ..audio import load_audio
    from ..config import SAMPLE_RATE
    from ..evaluate.lineup import lineup, write_lineup
    from ..registry import load_model

    with user_errors():
        options = _generation(device, threads, seed, temperature, min_p, batch_size)
        tell(f"loading model {model}", quiet)
        loaded = load_model(model, models)
        loaded.check_domain(source_domain)
        audio = load_audio(source)[int(start * SAMPLE_RATE) : int((start + seconds) * SAMPLE_RATE)]
        with progress_bar("lineup", quiet) as progress:
            clips = lineup(loaded, audio, source_domain, options, progress)
        output.mkdir(parents=True, exist_ok=True)
        key = write_lineup(clips, output, seed=seed, source=str(source), force=force)
    if not quiet:
        typer.echo(f"wrote {len(clips)} clips to {output}; answer key {key}", err=True)


def _parse_pitches(text: str) -> list[int]:
    """``48-72`` (every semitone), ``48-72:2`` (a step) or ``60,64,67``."""
    try:
        if "-" in text:
            span, _, step = text.partition(":")
            low, high = (int(v) for v in span.split("-"))
            pitches = list(range(low, high + 1, int(step or 1)))
        else:
            pitches = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give LOW-HIGH, LOW-HIGH:STEP or a comma list") from None
    if not pitches or not all(0 <= p <= 127 for p in pitches):
        raise typer.BadParameter(f"{text!r}: pitches must be MIDI numbers 0-127")
    return pitches


@evaluate_app.command("embedding")
def embedding_command(
    output: OutDirOption,
    instrument: Annotated[
        Optional[list[str]],
        typer.Option("--instrument", "-i", help="NAME or NAME=GM_PROGRAM; repeat (default: model domains)."),
    ] = None,
    pitches: Annotated[
        str, typer.Option("--pitches", help="MIDI pitches: LOW-HIGH[:STEP] or a comma list.")
    ] = "48-72:2",
    soundfont: Annotated[Optional[Path], typer.Option("--soundfont", help="GM soundfont (.sf2).")] = None,
    model: ModelOption = "default",
    models: ModelsOption = None,
    threads: ThreadsOption = None,
    force: ForceOption = False,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """The paper's NSynth study: note embeddings compared across pitch and instrument.

    Single notes rendered with FluidSynth are encoded; cosine-similarity matrices are plotted and
    the mean same-note similarity across instruments is reported (paper: 0.90-0.95).
    """
    import json

    from ..errors import OutputError
    from ..evaluate import plots
    from ..evaluate.embedding import embedding_study
    from ..registry import load_model
    from ..runtime import configure_runtime
    from ..safe_write import write_text

    notes = _parse_pitches(pitches)
    with user_errors():
        configure_runtime("cpu", threads, 0)
        loaded = load_model(model, models)
        target = output / "embedding.json"
        for path in (target, output / "embedding_raw.png", output / "embedding_centred.png"):
            if path.exists() and not force:
                raise OutputError(f"{path}: already exists; pass --force to overwrite")
        with progress_bar("embedding", quiet) as progress:
            study = embedding_study(
                loaded, instrument, notes, str(soundfont) if soundfont else None, progress
            )
        output.mkdir(parents=True, exist_ok=True)
        summary = study.summary()
        summary["plots"] = {
            "raw": str(plots.similarity_grid(study, output / "embedding_raw.png")),
            "centred": str(plots.similarity_grid(study, output / "embedding_centred.png", centred=True)),
        }
        write_text(target, json.dumps(summary, indent=2) + "\n", replace=force)
    if json_output:
        print_json(summary)
    elif not quiet:
        raw = summary["raw"]
        typer.echo(
            f"same note, two instruments: {raw['cross_diagonal_mean']:.3f} mean cosine (paper 0.90-0.95); "
            f"different notes: {raw['cross_off_diagonal_mean']:.3f}; wrote {target}"
        )


@evaluate_app.command("report")
def report_command(
    data: Annotated[
        Path, typer.Option("--data", help="Parallel test set: <domain>/<piece>.<ext> for every domain.")
    ],
    output: OutDirOption,
    model: ModelOption = "default",
    models: ModelsOption = None,
    pieces: Annotated[int, typer.Option("--pieces", min=1, help="Pieces to translate.")] = 3,
    seconds: Annotated[
        float, typer.Option("--seconds", callback=finite(0.5), help="Clip length per piece, s.")
    ] = 10.0,
    sources: Annotated[
        Optional[str],
        typer.Option("--sources", help="Comma-separated source domains (default: all in data)."),
    ] = None,
    targets: Annotated[
        Optional[str], typer.Option("--targets", help="Comma-separated target domains (default: model's).")
    ] = None,
    ceiling: Annotated[
        Optional[Path], typer.Option("--ceiling", help="The same test set from another soundfont.")
    ] = None,
    embedding: Annotated[
        bool, typer.Option("--embedding/--no-embedding", help="Include the NSynth-style embedding study.")
    ] = True,
    transcribe: Annotated[
        bool,
        typer.Option(
            "--transcribe/--no-transcribe",
            help="Include the transcribe-and-render baseline (pyin notes in the target's GM program; "
            "needs FluidSynth and a GM soundfont, left out with a note otherwise).",
        ),
    ] = True,
    one_source_per_piece: Annotated[
        bool,
        typer.Option(
            "--one-source-per-piece",
            help="Translate each piece from one source domain, taking them in turn, not from all.",
        ),
    ] = False,
    device: DeviceOption = Device.auto,
    threads: ThreadsOption = None,
    seed: SeedOption = 0,
    seeds: Annotated[
        int,
        typer.Option(
            "--seeds",
            min=1,
            help="Translations of each clip, at seeds SEED, SEED+1, ...: the model's scores are their "
            "means, so one sampling's luck does not decide a comparison.",
        ),
    ] = 1,
    temperature: TemperatureOption = DEFAULT_TEMPERATURE,
    min_p: MinPOption = DEFAULT_MIN_P,
    follow_pitch: FollowPitchOption = 1,
    retune: RetuneOption = DEFAULT_RETUNE,
    batch_size: BatchOption = 64,
    transpose: TransposeOption = "auto",
    force: ForceOption = False,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Score a model on a parallel test set: index.html, report.json, plots and clips.

    index.html shows the plots and players for input, translation and reference side by side;
    report.json holds every number, with the identity and reference baselines.
    """
    from ..evaluate.report import ReportOptions, build_report
    from ..jobs import parse_transpose
    from ..registry import load_model

    def split(text: str | None) -> list[str] | None:
        return [d.strip() for d in text.split(",") if d.strip()] if text else None

    with user_errors():
        options = ReportOptions(
            seconds=seconds,
            pieces=pieces,
            sources=split(sources),
            targets=split(targets),
            ceiling=ceiling,
            embedding=embedding,
            transcribe=transcribe,
            one_source_per_piece=one_source_per_piece,
            generation=_generation(
                device, threads, seed, temperature, min_p, batch_size, follow_pitch, retune
            ),
            seeds=seeds,
            force=force,
            transpose=parse_transpose(transpose),
        )
        tell(f"loading model {model}", quiet)
        loaded = load_model(model, models)
        with progress_bar("report", quiet) as progress:
            document = build_report(loaded, data, output, options, progress)
    for failure in document["failures"]:
        report_error(f"{failure['piece']} {failure['source']} -> {failure['target']}: {failure['error']}")
    if json_output:
        print_json(document)
    elif not quiet:
        typer.echo(
            f"wrote {output / 'index.html'}: {len(document['pairs'])} translations, "
            f"{len(document['failures'])} failed",
            err=True,
        )
    if document["failures"] or not document["pairs"]:
        raise typer.Exit(1)
