"""``evaluate report``: every metric over a parallel test set, as PNG plots, HTML and JSON.

The test set is a folder with one subfolder per domain holding the same pieces rendered on each
instrument (``TESTDIR/<domain>/<piece>.flac``, what the data recipe writes for its test split).
For each chosen piece, source domain and target domain, the source clip is translated with the
model and four *systems* are scored the same way, so every model number has its baselines beside
it (docs/design.md, "Evaluation: which number means what"):

* ``model`` - the translation;
* ``identity`` - the input copied through (the floor: what doing nothing scores);
* ``transcribe`` - the input's pyin notes rendered in the target's General MIDI program
  (:mod:`.transcribe`): what a user could do instead; left out, with a note, where FluidSynth or
  a soundfont is missing or the target has no GM program;
* ``reference`` - the real target rendering (the pitch and domain-check ceiling; its distance to
  itself is 0 and not shown);
* ``ceiling`` - the same piece rendered with another soundfont (``--ceiling DIR``, optional): what
  a perfect translation that is not sample-identical scores.

Per system: pitch against the notes of the MIDI score the renders were made from (:mod:`.notes`;
found as ``<data>/midi/<piece>.mid`` or in a ``midi`` folder beside the test set, the recipe's
layout; a source rendered transposed from it says so in ``<data>/transpositions.json``), pitch
against the source's pitch track (:mod:`.pitch`), measures against the reference
(:mod:`.reference`; onset F only for piano/harpsichord targets) and whether the domain classifier
(:mod:`.classifier`, when the model folder has one) names the target. Clips are kept short
(``seconds``, 10 by default) because pyin costs ~0.1-0.2 s per second of audio.

With ``seeds`` above 1 every clip is translated that many times, at consecutive sampler seeds, and
the model's scores are their means: on the shipped model the seed alone moved the mean pitch NCC of
eight whistles by more than most changes a report is run to judge (its card has the figures).
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import numbers
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import GenerationOptions, __version__, load_audio, save_audio
from ..audio import check_audible
from ..config import SAMPLE_RATE
from ..errors import MusicTranslateError, OutputError
from ..input_fit import AUTO
from ..recipes.eval_sets import TRANSPOSITIONS
from ..recipes.render import GM_PROGRAMS
from ..safe_write import claim_folder, write_text
from ..translation import FittedEncoding, decode, encode_fitted
from . import EvaluationError, plots
from .classifier import DomainClassifier, load_classifier
from .files import parallel_pieces
from .notes import first_onset_seconds, read_notes, score_notes, sounding
from .pitch import Contour, compare, pitch_contour
from .reference import ONSET_DOMAINS, score_reference
from .transcribe import transcribe_and_render, unavailable

if TYPE_CHECKING:
    from ..recipes.midi import NoteScore

if TYPE_CHECKING:
    from ..registry import Model

SYSTEMS = ("model", "identity", "transcribe", "reference", "ceiling")

HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("note_chroma_accuracy", "raw chroma accuracy vs the notes (50 cents)", "higher"),
    ("note_pitch_accuracy", "raw pitch accuracy vs the notes (50 cents)", "higher"),
    ("chroma_similarity", "chroma similarity to reference", "higher"),
    ("log_mel_distance", "log-mel distance to reference, dB", "lower"),
    ("domain_accuracy", "recognised as target (classifier)", "higher"),
    ("pitch_offset", "median pitch offset vs the notes, semitones", "closer to 0"),
)
"""What users hear, first in every table: the notes, in tune, in the target's timbre."""

METRICS: tuple[tuple[str, str, str], ...] = (
    *HEADLINE,
    ("ncc", "pitch NCC (paper; blind to transposition)", "higher"),
    ("dtw_ncc", "DTW + correlation (paper)", "higher"),
    ("raw_pitch_accuracy", "raw pitch accuracy vs the input's pyin (50 cents)", "higher"),
    ("dtw_cents_error", "DTW pitch error vs the input, cents", "lower"),
    ("stft_distance", "multi-resolution STFT distance", "lower"),
    ("onset_f", "onset F (piano, harpsichord)", "higher"),
)
"""Every number in the summary: key, label, and which direction is better."""

PLOTTED = (
    ("note_chroma_accuracy", "raw chroma accuracy vs the notes"),
    ("ncc", "pitch NCC"),
    ("chroma_similarity", "chroma similarity"),
    ("log_mel_distance", "log-mel distance (dB)"),
    ("domain_accuracy", "recognised as target"),
)

SOUNDING_DB = 40.0
"""A piece's clip starts at its first sample within this many dB of its peak (skips lead-in)."""


@dataclass(frozen=True)
class ReportOptions:
    """What the report covers. ``sources``/``targets`` default to every domain that can be one."""

    seconds: float = 10.0
    pieces: int = 3
    sources: Sequence[str] | None = None
    targets: Sequence[str] | None = None
    ceiling: Path | None = None
    embedding: bool = True
    embedding_instruments: Sequence[str] | None = None
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    seeds: int = 1  # translations per clip, at generation.seed, generation.seed + 1, ...
    force: bool = False
    transpose: int | str = AUTO
    one_source_per_piece: bool = False  # piece i from sources[i % n] only: every source, n x fewer pairs
    transcribe: bool = True  # the transcribe-and-render baseline, where FluidSynth can render it

    def sampler_seeds(self) -> list[int]:
        """The seed of each translation of a clip; the first one's audio and plots are kept."""
        return [self.generation.seed + i for i in range(self.seeds)]


@dataclass
class _Piece:
    """One piece's clips (cropped identically in every domain) and their cached pitch contours."""

    name: str
    slug: str
    clips: dict[str, np.ndarray]
    ceiling: dict[str, np.ndarray]
    start_seconds: float = 0.0  # where the clips start in the renders (which start at the first note)
    notes: NoteScore | None = None  # the score the renders were made from, when the data has it
    offsets: dict[str, int] = field(default_factory=dict)  # semitones a domain's render sits from it
    contours: dict[str, Contour] = field(default_factory=dict)
    latents: dict[str, FittedEncoding] = field(default_factory=dict)  # source -> its encoding

    def contour(self, key: str, audio: np.ndarray) -> Contour:
        if key not in self.contours:
            self.contours[key] = pitch_contour(audio)
        return self.contours[key]


def _json_safe(value: Any) -> Any:
    """Plain JSON: numpy scalars to Python, NaN and infinities to null (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "piece"


def _start_sample(clips: Sequence[np.ndarray]) -> int:
    """The earliest sounding sample over a piece's renders (they are sample-aligned)."""
    starts = []
    for audio in clips:
        peak = float(np.max(np.abs(audio), initial=0.0))
        loud = np.flatnonzero(np.abs(audio) >= peak * 10 ** (-SOUNDING_DB / 20))
        if len(loud):
            starts.append(int(loud[0]))
    return min(starts, default=0)


def _plan(
    model: Model, pieces: dict[str, dict[str, Path]], options: ReportOptions
) -> tuple[list[str], list[str], list[str]]:
    """Check the requested domains and pick sources, targets and pieces."""
    in_data = sorted({d for files in pieces.values() for d in files})
    sources = list(options.sources or in_data)
    targets = list(options.targets or [d for d in model.domains if d in in_data])
    for domain in targets:
        model.check_domain(domain)
    for domain in {*sources, *targets} - set(in_data):
        raise EvaluationError(f"no test audio for domain {domain!r}; the data has {', '.join(in_data)}")
    if not targets:
        raise EvaluationError(
            f"none of the model's domains ({', '.join(model.domains)}) has test audio "
            f"(the data has {', '.join(in_data)})"
        )
    eligible = [
        name
        for name, files in pieces.items()
        if any(s in files and t in files and s != t for s in sources for t in targets)
    ]
    if not eligible:
        raise EvaluationError("no piece is rendered in both a source and a target domain")
    # evenly spaced through the sorted names, so a few pieces span the collections (chorales, folk)
    picks = np.linspace(0, len(eligible) - 1, min(options.pieces, len(eligible))).round().astype(int)
    return sources, targets, [eligible[i] for i in sorted(set(picks.tolist()))]


def _jobs(
    chosen: list[str], pieces: dict[str, dict[str, Path]], sources: list[str], targets: list[str], one: bool
) -> list[tuple[str, str, str]]:
    """``(piece, source, target)`` for every translation; with ``one`` source per piece, piece
    ``i`` is translated from the ``i``-th source that has it (cycling), so every source is heard
    at a fraction of the cost."""
    jobs = []
    for index, name in enumerate(chosen):
        have = [s for s in sources if s in pieces[name]]
        use = have[index % len(have) :][:1] if one and have else have
        jobs += [(name, s, t) for s in use for t in targets if s != t and t in pieces[name]]
    return jobs


def _notes_file(data: Path, piece: str) -> Path | None:
    """The MIDI score of ``piece``: in the test set's ``midi`` folder or in one beside it."""
    for folder in (data / "midi", data.parent / "midi"):
        if (folder / f"{piece}.mid").is_file():
            return folder / f"{piece}.mid"
    return None


def _transpositions(data: Path) -> dict[str, dict[str, int]]:
    """``{domain: {piece: semitones}}`` of renders transposed from their score (a whistle moved
    into its register), from ``<data>/transpositions.json``; empty where there is none."""
    path = data / TRANSPOSITIONS
    if not path.is_file():
        return {}
    try:
        return {d: {p: int(s) for p, s in rows.items()} for d, rows in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise EvaluationError(f"{path}: not a {{domain: {{piece: semitones}}}} JSON object ({exc})") from None


def _load_piece(
    index: int,
    name: str,
    files: dict[str, Path],
    other: dict[str, Path],
    domains: set[str],
    seconds: float,
    data: Path,
    transpositions: dict[str, dict[str, int]],
) -> _Piece:
    """Load and crop a piece's renders (and its other-soundfont renders) at one common offset."""
    full = {d: load_audio(path) for d, path in files.items() if d in domains}
    ceiling = {d: load_audio(path) for d, path in other.items() if d in domains}
    start = _start_sample(list(full.values()))
    stop = start + int(seconds * SAMPLE_RATE)
    midi = _notes_file(data, name)
    return _Piece(
        name,
        f"{index:03d}_{_slug(name)}",
        {d: a[start:stop] for d, a in full.items()},
        {d: a[start:stop] for d, a in ceiling.items()},
        start / SAMPLE_RATE,
        read_notes(midi) if midi else None,
        {d: rows[name] for d, rows in transpositions.items() if name in rows},
    )


def _score_system(
    piece: _Piece,
    source: str,
    target: str,
    contour_key: str,
    audio: np.ndarray,
    against_reference: bool,
    classifier: DomainClassifier | None,
    semitones: int = 0,
    note_shift: int = 0,
) -> dict:
    """Pitch vs the notes (shifted by ``note_shift``, where the source plays them plus the input
    fit) and vs the source's track (shifted by the ``semitones`` the input was fitted with),
    measures vs the reference, and the classifier's verdict, flattened."""
    scores: dict[str, Any] = {}
    contour = piece.contour(contour_key, audio)
    if piece.notes is not None:
        start = first_onset_seconds(piece.notes) + piece.start_seconds
        try:
            grid = sounding(piece.notes, start, len(contour.f0), contour.hop_seconds, note_shift)
            scores.update(score_notes(contour, grid).to_dict())
        except EvaluationError as exc:
            scores["notes_note"] = str(exc)
    try:
        expected = piece.contour(source, piece.clips[source]).transposed(semitones)
        pitch = compare(expected, contour)
        scores.update(pitch.to_dict())
    except EvaluationError as exc:
        scores["pitch_note"] = str(exc)
    if against_reference:
        reference = score_reference(audio, piece.clips[target], with_onsets=target in ONSET_DOMAINS)
        scores.update(reference.to_dict())
    if classifier is not None and target in classifier.domains:
        scores["predicted_domain"] = classifier.predict(audio)
        scores["domain_accuracy"] = float(scores["predicted_domain"] == target)
    return scores


class _Writer:
    """Writes a report's clips and plots under ``out`` and returns their relative paths; a clip
    used by several pairs (an input, a reference) is written once."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.written: set[str] = set()

    def audio(self, piece: _Piece, label: str, audio: np.ndarray) -> str:
        relative = f"audio/{piece.slug}/{label}.wav"
        if relative not in self.written:
            (self.out / relative).parent.mkdir(parents=True, exist_ok=True)
            save_audio(self.out / relative, audio, force=True)
            self.written.add(relative)
        return relative

    def plot(self, draw: Callable[..., Path], what: Any, name: str, **kwargs: Any) -> str:
        return "plots/" + draw(what, self.out / "plots" / name, **kwargs).name


def _score_pair(
    model: Model,
    piece: _Piece,
    source: str,
    target: str,
    options: ReportOptions,
    classifier: DomainClassifier | None,
    writer: _Writer,
    transcribe: bool,
) -> dict:
    """Translate one clip, score every system, write its clips and plots: one ``pairs`` entry.

    ``transcribe``: add the transcribe-and-render baseline (the caller checked it can render)."""
    clip, reference = piece.clips[source], piece.clips[target]
    check_audible(clip, "input", model.config.pool)
    if source not in piece.latents:  # encoded once per source clip (it costs as much as decoding)
        piece.latents[source] = encode_fitted(
            clip, model=model, transpose=options.transpose, guide=options.generation.pitch_guided
        )
    latent, semitones, guide = piece.latents[source]
    seeds = options.sampler_seeds()
    outputs = {
        seed: decode(
            latent,
            target,
            model=model,
            length=len(clip),
            options=dataclasses.replace(options.generation, seed=seed),
            guide=guide,
        )
        for seed in seeds
    }
    output = outputs[seeds[0]]  # the translation kept as audio and plotted
    note_shift = piece.offsets.get(source, 0) + semitones  # where the notes should sound
    by_seed = {
        seed: _score_system(
            piece,
            source,
            target,
            f"{source}>{target}" + (f"@{seed}" if seed != seeds[0] else ""),
            audio,
            True,
            classifier,
            semitones,
            note_shift,
        )
        for seed, audio in outputs.items()
    }
    systems = {  # name -> (audio, pitch-contour cache key, scored against the reference?)
        "identity": (clip, source, True),
        "reference": (reference, target, False),
    }
    transcribe_note = None
    if transcribe:
        try:
            rendered = transcribe_and_render(
                piece.contour(source, clip), GM_PROGRAMS[target], len(clip), semitones
            )
            systems["transcribe"] = (rendered, f"transcribe:{source}>{target}", True)
        except EvaluationError as exc:
            transcribe_note = str(exc)
    if target in piece.ceiling:
        systems["ceiling"] = (piece.ceiling[target], f"ceiling:{target}", True)
    scores = {"model": _mean_scores(list(by_seed.values()))}
    scores |= {
        name: _score_system(piece, source, target, key, audio, vs_reference, classifier, 0, note_shift)
        for name, (audio, key, vs_reference) in systems.items()
    }
    audio_paths = {
        "input": writer.audio(piece, source, clip),
        "model": writer.audio(piece, f"{source}_to_{target}", output),
        "reference": writer.audio(piece, target, reference),
    }
    if "transcribe" in systems:
        audio_paths["transcribe"] = writer.audio(
            piece, f"{source}_transcribed_{target}", systems["transcribe"][0]
        )
    if "ceiling" in systems:
        audio_paths["ceiling"] = writer.audio(piece, f"ceiling_{target}", piece.ceiling[target])
    stem = f"{piece.slug}_{source}_to_{target}"
    labels = (f"input ({source})", f"translation ({target})", f"reference ({target})")
    keys = (source, f"{source}>{target}", target)
    return {
        "piece": piece.name,
        "source": source,
        "target": target,
        "seconds": len(clip) / SAMPLE_RATE,
        "transpose": semitones,
        "notes_transpose": note_shift if piece.notes is not None else None,
        **({"transcribe_note": transcribe_note} if transcribe_note else {}),
        "audio": audio_paths,
        "plots": {
            "spectrograms": writer.plot(
                plots.spectrograms,
                dict(zip(labels, (clip, output, reference), strict=True)),
                f"{stem}_spec.png",
            ),
            "contours": writer.plot(
                plots.contours,
                {
                    label: piece.contours[key]
                    for label, key in zip(labels, keys, strict=True)
                    if key in piece.contours
                },
                f"{stem}_pitch.png",
            ),
        },
        "scores": scores,
        **({"model_by_seed": {str(seed): row for seed, row in by_seed.items()}} if len(by_seed) > 1 else {}),
    }


def _mean_scores(samplings: list[dict]) -> dict:
    """One system's scores over several samplings of a clip: each number is the mean over the
    samplings that have it, the classifier's verdict the commonest, a note the first's."""
    merged = dict(samplings[0])
    for key in {key for scores in samplings for key in scores}:
        values = [
            v
            for scores in samplings
            if isinstance(v := scores.get(key), numbers.Real) and not isinstance(v, bool)
        ]
        if values:
            merged[key] = float(np.mean(values))
    verdicts = [scores["predicted_domain"] for scores in samplings if "predicted_domain" in scores]
    if verdicts:
        merged["predicted_domain"] = Counter(verdicts).most_common(1)[0][0]
    return merged


def _summarise_by_seed(pairs: list[dict]) -> dict:
    """``summary_by_seed[seed][target][metric]``: the model's means over the pairs at each seed,
    whose spread is the sampling noise in any single-seed report; empty with one seed."""
    seeds = list(pairs[0].get("model_by_seed", {})) if pairs else []
    return {
        seed: summarise(
            [{"target": p["target"], "scores": {"model": p["model_by_seed"][seed]}} for p in pairs]
        )["model"]
        for seed in seeds
    }


def summarise(pairs: list[dict], by: str = "target") -> dict:
    """``summary[system][target][metric]`` = mean over pairs (``None`` where no pair had it), plus
    ``n`` pairs, and the same over all targets under ``"all"``; ``by="source"`` groups by source
    instead (the paper's Table 2 has a row per source domain)."""
    summary: dict[str, dict[str, dict[str, float | None]]] = {}
    for system in SYSTEMS:
        groups: dict[str, list[dict]] = {}
        for pair in pairs:
            if system in pair.get("scores", {}):
                groups.setdefault(pair[by], []).append(pair["scores"][system])
                groups.setdefault("all", []).append(pair["scores"][system])
        if not groups:
            continue
        summary[system] = {}
        for target, rows in groups.items():
            means: dict[str, float | None] = {"n": len(rows)}
            for metric, _, _ in METRICS:
                values = [r[metric] for r in rows if r.get(metric) is not None]
                means[metric] = float(np.mean(values)) if values else None
            summary[system][target] = means
    return summary


def _is_report(folder: Path) -> bool:
    """Whether ``folder`` holds a report: the only folder whose files a report may replace."""
    return (folder / "report.json").is_file()


def build_report(
    model: Model,
    data: str | Path,
    out: str | Path,
    options: ReportOptions = ReportOptions(),
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Score the model on the parallel test set ``data`` and write ``out/index.html``,
    ``out/report.json``, ``out/plots/*.png`` and ``out/audio/*.wav``. Returns the JSON document.

    A pair that fails (a silent clip, say) is recorded under ``failures`` and the rest go on.
    """
    data, out = Path(data), Path(out)
    claim_folder(out, _is_report, "report", replace=options.force, ask="pass --force to overwrite it")
    pieces = parallel_pieces(data)
    sources, targets, chosen = _plan(model, pieces, options)
    try:
        for sub in ("plots", "audio"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the report folder ({exc.strerror or exc})") from None
    try:
        classifier: DomainClassifier | None = load_classifier(model.path)
        classifier_note = None
    except MusicTranslateError as exc:
        classifier, classifier_note = None, str(exc)

    jobs = _jobs(chosen, pieces, sources, targets, options.one_source_per_piece)
    transpositions = _transpositions(data)
    renderable = [t for t in targets if t in GM_PROGRAMS] if options.transcribe and not unavailable() else []
    transcribe_note = (
        "not requested"
        if not options.transcribe
        else unavailable()
        or (
            f"no General MIDI program known for {', '.join(sorted(set(targets) - set(renderable)))}"
            if len(renderable) < len(targets)
            else None
        )
    )
    other = parallel_pieces(options.ceiling) if options.ceiling is not None else {}
    total = len(jobs) + int(options.embedding)
    pairs: list[dict] = []
    failures: list[dict] = []
    loaded: dict[str, _Piece] = {}
    writer = _Writer(out)
    for done, (name, source, target) in enumerate(jobs):
        try:
            if name not in loaded:
                loaded[name] = _load_piece(
                    len(loaded),
                    name,
                    pieces[name],
                    other.get(name, {}),
                    {*sources, *targets},
                    options.seconds,
                    data,
                    transpositions,
                )
            pairs.append(
                _score_pair(
                    model, loaded[name], source, target, options, classifier, writer, target in renderable
                )
            )
        except MusicTranslateError as exc:
            failures.append({"piece": name, "source": source, "target": target, "error": str(exc)})
        if progress is not None:
            progress(done + 1, total)

    summary = summarise(pairs)
    summary_plot = None
    if pairs:
        per_target = {s: {t: v for t, v in rows.items() if t != "all"} for s, rows in summary.items()}
        summary_plot = writer.plot(plots.domain_scores, per_target, "domain_scores.png", metrics=PLOTTED)

    embedding = _embedding_section(model, writer, options)
    if progress is not None:
        progress(total, total)

    document = _json_safe(
        {
            "musictranslate": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": {"name": model.name, "path": str(model.path), "domains": model.domains},
            "data": str(data),
            "ceiling_data": str(options.ceiling) if options.ceiling else None,
            "settings": {
                "seconds": options.seconds,
                "pieces": chosen,
                "sources": sources,
                "targets": targets,
                "temperature": options.generation.temperature,
                "min_p": options.generation.min_p,
                "follow_pitch": options.generation.follow_pitch,
                "retune": options.generation.retune,
                "seed": options.generation.seed,
                "seeds": options.sampler_seeds(),
                "transpose": options.transpose,
            },
            "metrics": [{"key": k, "label": label, "better": b} for k, label, b in METRICS],
            "headline_metrics": [k for k, _, _ in HEADLINE],
            "baselines": {
                "transcribe": {"note": transcribe_note} if transcribe_note else {"targets": renderable}
            },
            "classifier": (
                {"domains": classifier.domains, "training": classifier.meta.get("training", {})}
                if classifier
                else {"note": classifier_note}
            ),
            "summary": summary,
            "summary_by_source": summarise(pairs, by="source"),
            "summary_by_seed": _summarise_by_seed(pairs),
            "summary_plot": summary_plot,
            "pairs": pairs,
            "failures": failures,
            "embedding": embedding,
        }
    )
    write_text(out / "report.json", json.dumps(document, indent=2) + "\n")
    write_text(out / "index.html", render_html(document))
    return document


def _embedding_section(model: Model, writer: _Writer, options: ReportOptions) -> dict:
    """Run the embedding study into the report, or say why it was skipped."""
    if not options.embedding:
        return {"skipped": "not requested"}
    from .embedding import embedding_study

    try:
        study = embedding_study(model, options.embedding_instruments)
    except MusicTranslateError as exc:
        return {"skipped": str(exc)}
    return {
        **study.summary(),
        "plots": {
            "raw": writer.plot(plots.similarity_grid, study, "embedding_raw.png"),
            "centred": writer.plot(plots.similarity_grid, study, "embedding_centred.png", centred=True),
        },
    }


# ------------------------------------------------------------------------------------------------
# HTML

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.players { display: flex; gap: 1.5em; flex-wrap: wrap; }
.players figure { margin: 0; }
img { max-width: 100%; }
section.pair { border-top: 1px solid #ddd; margin-top: 2em; }
#media-status { padding: 0.4em; background: #eef; }
.bad { background: #fdd !important; }
"""

_MEDIA_CHECK = """
window.addEventListener("load", () => {
  const status = document.getElementById("media-status");
  const images = Array.from(document.images);
  const brokenImages = images.filter((img) => !img.complete || img.naturalWidth === 0).length;
  const players = Array.from(document.querySelectorAll("audio"));
  const waits = players.map((a) => a.readyState >= 1 ? Promise.resolve(true) : new Promise((done) => {
    a.addEventListener("loadedmetadata", () => done(true), { once: true });
    a.addEventListener("error", () => done(false), { once: true });
  }));
  Promise.all(waits).then((ok) => {
    const brokenAudio = ok.filter((x) => !x).length;
    status.dataset.images = images.length;
    status.dataset.brokenImages = brokenImages;
    status.dataset.audio = players.length;
    status.dataset.brokenAudio = brokenAudio;
    status.dataset.checked = "true";
    status.textContent = brokenImages + brokenAudio === 0
      ? `All ${images.length} plots and ${players.length} audio clips loaded.`
      : `${brokenImages} of ${images.length} plots and ${brokenAudio} of ${players.length} clips ` +
        "failed to load: keep index.html, plots/ and audio/ together.";
    if (brokenImages + brokenAudio) status.classList.add("bad");
  });
});
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return html.escape(str(value))


def _table(rows: list[tuple[str, dict]], metrics: Sequence[tuple[str, str, str]]) -> str:
    head = "".join(
        f"<th title='{html.escape(b)} is better'>{html.escape(label)}</th>" for _, label, b in metrics
    )
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{_fmt(scores.get(k))}</td>" for k, _, _ in metrics)
        + "</tr>"
        for name, scores in rows
    )
    return f"<table><tr><th></th>{head}</tr>{body}</table>"


def _player(label: str, src: str) -> str:
    return (
        f"<figure><figcaption>{html.escape(label)}</figcaption>"
        f"<audio controls preload='metadata' src='{html.escape(src)}'></audio></figure>"
    )


def _seeds_text(settings: dict) -> str:
    """How the translations were sampled, for the page's header."""
    seeds = settings["seeds"]
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return (
        f"seeds {seeds[0]}-{seeds[-1]} (each clip translated {len(seeds)} times; the model's scores are "
        f"their means, the players and plots seed {seeds[0]}'s)"
    )


def render_html(document: dict) -> str:
    """The report page: summary table and plot, embedding study, then every example with players
    for input, translation and reference side by side. All links are relative to ``out``."""
    esc = html.escape
    model, settings = document["model"], document["settings"]
    metrics = [(m["key"], m["label"], m["better"]) for m in document["metrics"]]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>musictranslate report: {esc(model['name'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Translation report: model {esc(model['name'])}</h1>",
        "<p id='media-status'>Checking that plots and audio load…</p>",
        f"<p>Test data <code>{esc(document['data'])}</code>; {len(settings['pieces'])} piece(s), "
        f"{esc(str(settings['seconds']))} s clips; sources {esc(', '.join(settings['sources']))}; "
        f"targets {esc(', '.join(settings['targets']))}; temperature {settings['temperature']}, "
        f"min-p {settings['min_p']}, pitch-guided by {settings['follow_pitch']} candidate(s), "
        f"{'retuned' if settings.get('retune') else 'not retuned'}, "
        f"{_seeds_text(settings)}. Created {esc(document['created'])} by musictranslate "
        f"{esc(document['musictranslate'])}; every number is in <a href='report.json'>report.json</a>.</p>",
        "<p>How to read it: the first columns are what a listener hears. Raw chroma and raw pitch "
        "accuracy score the output's pyin pitch frame by frame against the notes of the score the test "
        "audio was rendered from (in a polyphonic piece, against the sounding note nearest to the output's "
        "pitch); the median offset says whether it plays flat (negative) or sharp, octave-folded. Chroma "
        "similarity and log-mel distance compare it with the real target rendering, and the classifier "
        "says whether it sounds like the target. The paper's pitch NCC and DTW follow; they are zero-mean "
        "and cannot see a transposition. Baselines: <b>identity</b> is the input copied through (doing "
        "nothing), <b>transcribe</b> the input's pyin notes rendered in the target's General MIDI program "
        "(what a user could do instead; one line only on a polyphonic input), <b>reference</b> the real "
        "target rendering, <b>ceiling</b> the target rendered with another soundfont. Onset F is shown "
        "only for piano and harpsichord targets.</p>",
    ]
    summary = document["summary"]
    targets = sorted({t for rows in summary.values() for t in rows if t != "all"}) + ["all"]
    headline = [m for m in metrics if m[0] in document["headline_metrics"]]
    parts.append("<h2>What users hear, by target domain</h2>")
    parts.append(
        _table(
            [
                (f"{target}: {system}", summary[system][target])
                for target in targets
                for system in SYSTEMS
                if target in summary.get(system, {})
            ],
            headline,
        )
    )
    if "note" in document["baselines"]["transcribe"]:
        parts.append(
            f"<p>No transcribe-and-render row: {esc(document['baselines']['transcribe']['note'])}.</p>"
        )
    parts.append("<h2>Every measure by target domain</h2>")
    for target in targets:
        rows = [(system, summary[system][target]) for system in SYSTEMS if target in summary.get(system, {})]
        if rows:
            n = int(rows[0][1].get("n") or 0)
            parts.append(f"<h3>{esc(target)} ({n} translation{'s' if n != 1 else ''})</h3>")
            parts.append(_table(rows, metrics))
    by_seed = document["summary_by_seed"]
    if by_seed:
        parts.append("<h3>model, all targets, at each seed (the spread is the sampling noise)</h3>")
        parts.append(_table([(f"seed {seed}", rows["all"]) for seed, rows in by_seed.items()], metrics))
    if document["summary_plot"]:
        parts.append(f"<img src='{esc(document['summary_plot'])}' alt='scores by target domain'>")
    classifier = document["classifier"]
    parts.append("<h2>Domain classifier</h2>")
    if "domains" in classifier:
        training = classifier["training"]
        parts.append(
            f"<p>Domains {esc(', '.join(classifier['domains']))}; trained on "
            f"{esc(', '.join(training.get('data', [])))}; "
            f"train accuracy {_fmt(training.get('train_accuracy'))}, "
            f"held-out accuracy {_fmt(training.get('val_accuracy'))}.</p>"
        )
    else:
        parts.append(f"<p>Not available: {esc(str(classifier.get('note')))}</p>")
    parts.append(_embedding_html(document["embedding"]))
    if document["failures"]:
        parts.append("<h2>Failures</h2><ul>")
        parts += [
            f"<li>{esc(f['piece'])}: {esc(f['source'])} → {esc(f['target'])}: {esc(f['error'])}</li>"
            for f in document["failures"]
        ]
        parts.append("</ul>")
    parts.append("<h2>Examples</h2>")
    for pair in document["pairs"]:
        audio = pair["audio"]
        players = [
            _player(f"input ({pair['source']})", audio["input"]),
            _player(f"translation ({pair['target']})", audio["model"]),
            _player(f"reference ({pair['target']})", audio["reference"]),
        ]
        if "transcribe" in audio:
            players.append(_player("transcribed and rendered (baseline)", audio["transcribe"]))
        if "ceiling" in audio:
            players.append(_player("other soundfont (ceiling)", audio["ceiling"]))
        parts += [
            "<section class='pair'>",
            f"<h3>{esc(pair['piece'])}: {esc(pair['source'])} → {esc(pair['target'])}</h3>",
            f"<div class='players'>{''.join(players)}</div>",
            _table(list(pair["scores"].items()), metrics),
            f"<img src='{esc(pair['plots']['spectrograms'])}' alt='log-mel spectrograms'>",
            f"<img src='{esc(pair['plots']['contours'])}' alt='pitch contours'>",
            "</section>",
        ]
    parts.append(f"<script>{_MEDIA_CHECK}</script></body></html>\n")
    return "\n".join(parts)


def _embedding_html(embedding: dict) -> str:
    esc = html.escape
    if "skipped" in embedding:
        return f"<h2>Embedding study</h2><p>Skipped: {esc(embedding['skipped'])}</p>"
    raw, centred = embedding["raw"], embedding["centred"]
    return (
        "<h2>Embedding study (NSynth-style single notes)</h2>"
        f"<p>Instruments {esc(', '.join(embedding['instruments']))}; MIDI pitches "
        f"{embedding['pitches'][0]}–{embedding['pitches'][-1]}. Mean cosine similarity of the same note on "
        f"two instruments (the paper reports 0.90–0.95): <b>{_fmt(raw['cross_diagonal_mean'])}</b>, against "
        f"{_fmt(raw['cross_off_diagonal_mean'])} for different notes; after removing the shared mean: "
        f"{_fmt(centred['cross_diagonal_mean'])} against {_fmt(centred['cross_off_diagonal_mean'])}.</p>"
        f"<img src='{esc(embedding['plots']['raw'])}' alt='note embedding similarity, raw'>"
        f"<img src='{esc(embedding['plots']['centred'])}' alt='note embedding similarity, centred'>"
    )
