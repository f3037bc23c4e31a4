"""Batch jobs behind ``translate`` and ``blend``: many inputs, several domains, one result each.

Users hand a tool whole folders and expect every good file to be written even when some are bad,
a non-zero exit when anything was not produced, and a record of what happened per file. So the
work is split in three steps that the CLI calls in order:

1. *plan*: expand files and folders (recursively, audio extensions only, sorted), name every
   output, and reject argument combinations that cannot work (``UsageError``, exit 2) before any
   model is loaded;
2. *check*: the model has every requested domain (fails before any work, naming the known ones);
3. *run*: each input is loaded and encoded **once**, then decoded by each requested decoder;
   a failure is recorded against that input and the run goes on with the next one.

Every output gets a ``Result`` with its timing and status; the CLI prints them as a table or
JSON. Nothing here prints.

Re-running over a folder must not translate the tool's own outputs (``a_piano.wav`` into
``a_piano_piano.wav``). Every output carries a provenance comment in its own metadata
(``PROVENANCE_PREFIX``), and a folder scan skips files that carry it, with a note. A file's name
is no evidence: a user's own ``solo_piano.wav`` is music to translate. The tag suffices because
every extension a folder scan picks up (``AUDIO_EXTENSIONS``) that the tool can write -- wav,
flac, ogg, mp3, aiff -- holds a comment (a test writes and reads it back in each), and inputs
whose format cannot be written (m4a, aac, opus) are written as wav; the formats that hold no tag
(au, w64 ...) are never picked up by a scan. Within one run, an input that another input's output
will replace is skipped too. A file named on its own is translated even if the tool wrote it: that
is a deliberate second translation.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from . import __version__
from .audio import (
    AUDIO_EXTENSIONS,
    check_audible,
    check_not_constant,
    read_audio,
    read_comment,
    resample,
    save_audio,
)
from .config import SAMPLE_RATE
from .errors import DomainError, MusicTranslateError, OutputError, UsageError
from .generate import Progress
from .input_fit import AUTO
from .loudness import limit_peak
from .names import DOMAIN_RULE, is_domain_name
from .pitch_guide import PitchGuide
from .registry import Model
from .scan import audio_files, real_path
from .speed import GenerationOptions
from .translation import decode, encode_blend, encode_fitted

DEFAULT_EXTENSION = ".wav"
"""Output extension when the input's own format cannot be written (m4a, aac, opus...)."""

RECOVERABLE = (MusicTranslateError, OSError, MemoryError)
"""Failures that belong to one input or output; anything else is a bug and stops the run."""

MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
"""The only sample rates an MPEG audio file can hold."""

PROVENANCE_PREFIX = "musictranslate "
"""How every output's metadata comment starts (``musictranslate 0.1.0: model=... domain=...``)."""


def provenance(path: Path) -> str | None:
    """The provenance comment of a file this tool wrote, ``None`` for any other file."""
    comment = read_comment(path)
    return comment if comment.startswith(PROVENANCE_PREFIX) and " model=" in comment else None


# --------------------------------------------------------------------------------------------
# results


@dataclass
class Result:
    """What happened to one output: where it went, how long it took, and why it failed if it did.

    ``rtf`` is the real-time factor, wall seconds per second of audio: below 1 is faster than
    real time. The time spent loading and encoding an input is shared evenly among its outputs.
    """

    input: str
    output: str | None
    domain: str | None
    seed: int
    seconds: float | None = None
    wall_seconds: float = 0.0
    status: str = "ok"  # ok, failed or skipped
    error: str | None = None
    traceback: str | None = None  # of a failure, for ``--debug``; not part of the JSON record
    transpose: tuple[int, ...] = ()
    sample_rate: int | None = None  # of the file written
    model: str | None = None
    device: str | None = None
    note: str | None = None  # why an input was skipped, or what a user should know about it

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    @property
    def rtf(self) -> float | None:
        if not self.seconds:
            return None
        return self.wall_seconds / self.seconds

    def to_dict(self) -> dict:
        """The JSON record: ``input, output, domain, seconds, wall_seconds, rtf, status, error, seed,
        transpose`` (semitones per input, ``[]`` when it was never encoded), ``sample_rate`` (of
        the file written), ``model``, ``device`` and ``note``."""
        rtf = self.rtf
        return {
            "input": self.input,
            "output": self.output,
            "domain": self.domain,
            "seconds": None if self.seconds is None else round(self.seconds, 4),
            "wall_seconds": round(self.wall_seconds, 4),
            "rtf": None if rtf is None else round(rtf, 4),
            "status": self.status,
            "error": self.error,
            "seed": self.seed,
            "transpose": list(self.transpose),
            "sample_rate": self.sample_rate,
            "model": self.model,
            "device": self.device,
            "note": self.note,
        }


# --------------------------------------------------------------------------------------------
# plan: inputs -> tasks (one encoding each) -> targets (one decoding each)


@dataclass
class Encoded:
    """An input's latent, the length to decode, the audio whose loudness the output matches, the
    semitones each input was shifted by to fit the model's register (``input_fit``), the input's
    own sample rate (the output's unless another is asked for), and warnings for the user."""

    latent: torch.Tensor
    length: int
    reference: np.ndarray
    transpose: tuple[int, ...]
    sample_rate: int = SAMPLE_RATE
    warnings: tuple[str, ...] = ()
    guide: PitchGuide | None = None  # the input's pitch, for pitch-guided sampling


@dataclass
class Target:
    """One output: a domain and a path, or the reason it cannot be written (found while planning)."""

    domain: str | None
    output: Path | None
    error: str | None = None


@dataclass
class Task:
    """One latent to compute and every output decoded from it."""

    label: str
    inputs: tuple[Path, ...]
    targets: list[Target] = field(default_factory=list)
    encode: Callable[[Model, int | str, bool], Encoded] | None = None
    skip: str | None = None  # why this input is left alone (the tool wrote it)


@dataclass(frozen=True)
class Source:
    """An audio file and its path below the folder it was found in (its own name for a file)."""

    path: Path
    relative: Path


def parse_domains(values: Iterable[str]) -> list[str]:
    """``--to piano,flute --to organ`` -> ``["piano", "flute", "organ"]``, duplicates dropped."""
    domains: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if name and not is_domain_name(name):
                raise UsageError(f"{name!r}: not a domain name; {DOMAIN_RULE}")
            if name and name not in domains:
                domains.append(name)
    if not domains:
        raise UsageError("no domain given; name at least one, e.g. --to piano")
    return domains


def parse_transpose(value: str) -> int | str:
    """``--transpose auto`` or a whole number of semitones within four octaves."""
    text = value.strip().lower()
    if text == AUTO:
        return AUTO
    try:
        semitones = int(text)
    except ValueError:
        semitones = None
    if semitones is None or abs(semitones) > 48:
        raise UsageError(f"--transpose {value}: give auto or whole semitones from -48 to 48, e.g. -12")
    return semitones


def check_domains(model: Model, domains: Sequence[str]) -> None:
    """Fail before any work when the model lacks any requested domain, listing the known ones."""
    unknown = [d for d in domains if d not in model.domains]
    if unknown:
        names = ", ".join(repr(d) for d in unknown)
        known = ", ".join(model.domains) or "none"
        plural = "s" if len(unknown) > 1 else ""
        raise DomainError(f"unknown domain{plural} {names} for model {model.name!r}; known: {known}")


def writable_extension(extension: str) -> bool:
    """Whether soundfile can write a file with this extension (wav, flac, ogg, mp3, aiff...)."""
    return extension.lstrip(".").upper() in sf.available_formats()


def normalise_format(fmt: str | None) -> str | None:
    """``--format flac`` or ``.FLAC`` -> ``.flac``; an unwritable format is a usage error."""
    if fmt is None:
        return None
    extension = "." + fmt.strip().lstrip(".").lower()
    if not writable_extension(extension):
        raise UsageError(f"--format {fmt}: cannot write that; use e.g. wav, flac, ogg or mp3")
    return extension


def _output_extension(source: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    suffix = source.suffix.lower()
    return suffix if writable_extension(suffix) else DEFAULT_EXTENSION


def _scan_folder(folder: Path, skip: Path | None) -> list[Source]:
    """Audio files below ``folder`` (``scan.audio_files``), each with its path below it."""
    return [Source(path, path.relative_to(folder)) for path in audio_files(folder, skip)]


def _no_audio_message(folder: Path) -> str:
    return f"{folder}: no audio files in this folder or below (looked for {', '.join(AUDIO_EXTENSIONS)})"


def _single_file_output(output: Path | None, several: bool, why: str) -> bool:
    """Whether ``-o`` names a file: it has an extension and is not an existing folder.

    For ``several`` outputs an audio extension is a usage error, and any other dot is part of a
    folder's name (``-o runs/v1.0``); for one output, an extension soundfile cannot write is.
    """
    if output is None or not output.suffix or output.is_dir():
        return False
    suffix = output.suffix.lower()
    if several:
        if suffix not in AUDIO_EXTENSIONS and not writable_extension(suffix):
            return False
        raise UsageError(f"-o {output} names one file, but {why}; give a folder instead (-o DIR)")
    if not writable_extension(suffix):
        raise UsageError(
            f"-o {output}: cannot write {output.suffix} files; use e.g. .wav, .flac or .ogg "
            "(or, for a folder of that name, create it first)"
        )
    return True


def _mark_duplicates(tasks: list[Task]) -> None:
    """Two inputs that would write the same output (``a/x.wav`` and ``b/x.wav`` into one ``-o``
    folder): the later one fails instead of silently overwriting the earlier one's result."""
    owners: dict[Path, str] = {}
    for task in tasks:
        for target in task.targets:
            if target.output is None or target.error:
                continue
            key = real_path(target.output)
            if key in owners:
                target.error = f"{target.output}: also the output of {owners[key]}; use separate -o folders"
            else:
                owners[key] = task.label


def _skip_outputs_of_this_run(tasks: list[Task]) -> None:
    """An input that another input's output replaces in this run (``--force``) is left alone:
    read after that, it would be the run's own output."""
    written = {
        real_path(t.output): task.label for task in tasks for t in task.targets if t.output and not t.error
    }
    for task in tasks:
        if task.encode is None or task.skip:
            continue
        owner = next((written[real_path(p)] for p in task.inputs if real_path(p) in written), None)
        if owner is not None and owner != task.label:
            task.skip = f"skipped: the output of {owner} in this run replaces it"
            task.targets = []


def _encode_file(path: Path, model: Model, transpose: int | str, guide: bool) -> Encoded:
    audio, rate = read_audio(path)
    check_audible(audio, str(path), model.config.pool)
    latent, semitones, track = encode_fitted(audio, model=model, transpose=transpose, guide=guide)
    return Encoded(latent, len(audio), audio, (semitones,), rate, guide=track)


def _encode_pair(
    first: Path, second: Path, keep: float, crossfade: float, model: Model, transpose: int | str, guide: bool
) -> Encoded:
    """A blend is never pitch-guided (``guide`` is ignored): its crossfaded latent follows neither
    input's pitch track alone."""
    (a, rate), (b, _) = read_audio(first), read_audio(second)
    for path, audio in ((first, a), (second, b)):
        check_audible(audio, str(path), model.config.pool)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        latent, shifts = encode_blend(a, b, model=model, keep=keep, crossfade=crossfade, transpose=transpose)
    notes = tuple(f"{first}: {w.message}" for w in caught)
    length = latent.shape[1] * model.config.pool
    return Encoded(latent, length, np.concatenate([a, b]), shifts, rate, notes)


def plan_translate(
    inputs: Sequence[Path], domains: Sequence[str], output: Path | None = None, fmt: str | None = None
) -> list[Task]:
    """One task per audio file found, each with one target per domain.

    Outputs are ``<stem>_<domain>.<ext>`` next to the input, or under ``output`` mirroring the
    tree below each folder given; ``output`` may name a file only for one file and one domain.
    A folder without audio becomes a task that fails with a message naming it.
    """
    several = len(inputs) * len(domains) > 1 or any(p.is_dir() for p in inputs)
    single = _single_file_output(output, several, "several inputs or domains (or a folder) were given")
    skip = real_path(output) if output is not None and not single else None
    tasks: list[Task] = []
    seen: set[Path] = set()
    for given in inputs:
        if given.is_dir():
            sources = _scan_folder(given, skip)
            if not sources:
                tasks.append(Task(str(given), (given,), [Target(None, None, _no_audio_message(given))]))
        else:
            sources = [Source(given, Path(given.name))]
        for source in sources:
            key = real_path(source.path)
            if key in seen:
                continue
            seen.add(key)
            written_by = provenance(source.path) if given.is_dir() else None
            if written_by is not None:
                why = (
                    f"skipped: written by {written_by.partition(' seed=')[0]}; name the file to translate it"
                )
                tasks.append(Task(str(source.path), (source.path,), skip=why))
                continue
            extension = _output_extension(source.path, fmt)
            targets = []
            for domain in domains:
                name = f"{source.path.stem}_{domain}{extension}"
                if single:
                    path = output
                elif output is None:
                    path = source.path.with_name(name)
                else:
                    path = output / source.relative.with_name(name)
                targets.append(Target(domain, path))
            tasks.append(Task(str(source.path), (source.path,), targets, partial(_encode_file, source.path)))
    _mark_duplicates(tasks)
    _skip_outputs_of_this_run(tasks)
    return tasks


def plan_blend(
    first: Path,
    second: Path,
    domains: Sequence[str],
    output: Path | None = None,
    fmt: str | None = None,
    keep: float = 3.5,
    crossfade: float = 1.5,
) -> list[Task]:
    """One task (the blended latent) with a target per domain, named ``<a>_<b>_<domain>.<ext>``
    next to the first input or in the ``output`` folder."""
    if keep < 0 or crossfade < 0:
        raise UsageError("--keep and --crossfade must be >= 0 seconds")
    single = _single_file_output(output, len(domains) > 1, "several domains were given")
    extension = _output_extension(first, fmt)
    targets = []
    for domain in domains:
        name = f"{first.stem}_{second.stem}_{domain}{extension}"
        path = output if single else (output or first.parent) / name
        targets.append(Target(domain, path))
    encoder = partial(_encode_pair, first, second, keep, crossfade)
    return [Task(f"{first} + {second}", (first, second), targets, encoder)]


# --------------------------------------------------------------------------------------------
# run


@dataclass(frozen=True)
class RunOptions:
    """How outputs are produced and written, beyond the generator's own options."""

    generation: GenerationOptions = GenerationOptions()
    force: bool = False
    match_loudness: bool = True
    transpose: int | str = AUTO
    sample_rate: int | None = None  # of the files written; None: each input's own


ProgressFactory = Callable[[str], AbstractContextManager[Progress | None]]
StatusCallback = Callable[[str], None]
"""Told what a run is doing before a progress bar can show it (fitting and encoding an input)."""


def _prepare_output(target: Target, inputs: tuple[Path, ...], force: bool) -> str | None:
    """Check the output before any work: not an input, not existing (unless ``force``), folder made.

    Catching these before generation means a user never waits minutes to learn that the output
    was in the way.
    """
    path = target.output
    assert path is not None
    if any(real_path(path) == real_path(source) for source in inputs):
        return f"{path}: is the input itself; choose another output name"
    if path.exists() and not force:
        return f"{path}: already exists; pass --force to overwrite"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"{path.parent}: cannot create the output folder ({exc.strerror or exc})"
    if not os.access(path.parent, os.W_OK):  # read-only folder or file system
        return f"{path.parent}: output folder is not writable; choose another -o folder"
    return None


def output_rate(path: Path, rate: int, asked: bool) -> int:
    """The sample rate to write ``path`` at: ``rate``, or for an mp3 the nearest rate MPEG can
    hold when ``rate`` was only the input's (a 96 kHz recording becomes a 48 kHz mp3)."""
    if path.suffix.lower() != ".mp3" or rate in MP3_RATES:
        return rate
    if asked:
        raise OutputError(
            f"{path}: mp3 cannot hold {rate} Hz; give --sample-rate one of "
            f"{', '.join(map(str, MP3_RATES))}, or another --format"
        )
    return min(MP3_RATES, key=lambda r: abs(r - rate))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "out of memory; try a shorter file or a smaller --batch-size"
    if isinstance(exc, OSError) and not isinstance(exc, MusicTranslateError):
        return f"{exc.filename or 'file'}: {exc.strerror or exc}"
    return str(exc)


def run(
    model: Model,
    tasks: Sequence[Task],
    options: RunOptions = RunOptions(),
    progress: ProgressFactory | None = None,
    on_result: Callable[[Result], None] | None = None,
    on_status: StatusCallback | None = None,
) -> list[Result]:
    """Encode each task once, decode it for each target, write the outputs; one ``Result`` each.

    A failing input or output is recorded (and passed to ``on_result`` at once, so a long run
    reports problems as they happen) and the run continues; only bugs propagate.
    """
    results: list[Result] = []

    def record(result: Result) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    for task in tasks:
        _run_task(model, task, options, progress, record, on_status)
    return results


def _run_task(
    model: Model,
    task: Task,
    options: RunOptions,
    progress: ProgressFactory | None,
    record: Callable[[Result], None],
    on_status: StatusCallback | None = None,
) -> None:
    seed = options.generation.seed
    setup = {"model": model.name, "device": options.generation.device}

    def failed(target: Target, error: str, seconds: float | None = None, wall: float = 0.0) -> None:
        output = None if target.output is None else str(target.output)
        trace = traceback.format_exc() if sys.exc_info()[0] is not None else None
        record(
            Result(task.label, output, target.domain, seed, seconds, wall, "failed", error, trace, **setup)
        )

    if task.skip is not None:
        record(Result(task.label, None, None, seed, status="skipped", note=task.skip, **setup))
        return

    missing = next((p for p in task.inputs if not p.exists() and not p.is_symlink()), None)
    ready = []
    for target in task.targets:
        if target.error is None and missing is not None:
            target.error = f"{missing}: no such file"
        error = target.error or _prepare_output(target, task.inputs, options.force)
        if error:
            failed(target, error)
        else:
            ready.append(target)
    if not ready or task.encode is None:
        return

    if on_status is not None:
        on_status(f"{task.label}: fitting to the model's register and level, encoding")
    started = time.perf_counter()
    try:
        encoded = task.encode(model, options.transpose, options.generation.pitch_guided)
    except RECOVERABLE as exc:
        share = (time.perf_counter() - started) / len(ready)
        for target in ready:
            failed(target, _describe(exc), wall=share)
        return
    share = (time.perf_counter() - started) / len(ready)
    seconds = encoded.length / SAMPLE_RATE
    note = " ".join(encoded.warnings) or None

    for target in ready:
        started = time.perf_counter()
        bar = progress(f"{task.label} -> {target.domain}") if progress else nullcontext()
        try:
            rate = output_rate(
                target.output, options.sample_rate or encoded.sample_rate, bool(options.sample_rate)
            )
            with bar as update:
                audio = decode(
                    encoded.latent,
                    target.domain,
                    model=model,
                    length=encoded.length,
                    options=options.generation,
                    progress=update,
                    loudness_of=encoded.reference if options.match_loudness else None,
                    guide=encoded.guide,
                )
            check_not_constant(audio, str(target.output))
            audio = resample(audio, SAMPLE_RATE, rate)
            if options.match_loudness and rate != SAMPLE_RATE:
                audio = limit_peak(audio)  # resampling can lift a peak past the -1 dBFS ceiling
            tag = (
                f"{PROVENANCE_PREFIX}{__version__}: model={model.name} domain={target.domain} "
                f"seed={seed} temperature={options.generation.temperature} min_p={options.generation.min_p} "
                f"follow_pitch={options.generation.follow_pitch} retune={options.generation.retune} "
                f"transpose={','.join(map(str, encoded.transpose))}"
            )
            save_audio(target.output, audio, rate, force=options.force, comment=tag)
        except RECOVERABLE as exc:
            failed(target, _describe(exc), seconds, share + time.perf_counter() - started)
        else:
            wall = share + time.perf_counter() - started
            record(
                Result(
                    task.label,
                    str(target.output),
                    target.domain,
                    seed,
                    seconds,
                    wall,
                    transpose=encoded.transpose,
                    sample_rate=rate,
                    note=note,
                    **setup,
                )
            )
